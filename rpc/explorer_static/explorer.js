// The block explorer of an inferchain validator: one page, hash routes, the validator's own
// JSON-RPC API (POST /) for reads, by index (batches of reads by height, never a scan), and
// its WebSocket (/ws, PROTOCOL 5.6) for what changes. No framework, nothing from elsewhere.
"use strict";

(() => {
  const PAGE_BLOCKS = 20; // blocks on a page of the blocks list
  const HISTORY_BLOCKS = 50; // heights of a resource node's earnings chart
  const SIGNED_WINDOW = 100; // recent blocks whose commits count a validator's signatures
  const TASKS_PAGE = 50; // an account's tasks per page
  const MAX_ROWS = 500; // of a block's transactions, and of what it did to tasks
  const MAX_BATCH = 1000; // the validator's batch limit (PROTOCOL 5)
  const DECIMALS = 18n;
  const HASH = /^0x[0-9a-fA-F]{64}$/;
  const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
  const HEIGHT = /^(0|[1-9][0-9]{0,15})$/;
  const RESULT_STATUS = ["pending", "verifying", "verified", "rejected", "unverified"];
  const SVG = "http://www.w3.org/2000/svg";

  const view = document.getElementById("view");
  const liveBadge = document.getElementById("live");

  // ---------------------------------------------------------------- the API

  class RpcError extends Error {
    constructor(error) {
      super(error.message);
      this.code = error.code;
      this.data = error.data || {};
    }
  }

  // What the page tells the reader instead of a page: a title and a sentence.
  class Problem extends Error {
    constructor(title, detail) {
      super(title);
      this.detail = detail;
    }
  }

  let nextId = 1;

  async function post(body) {
    const response = await fetch("/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.status !== 200) {
      throw new Problem(`The validator answered HTTP ${response.status}`, await response.text());
    }
    return response.json();
  }

  async function rpc(method, params) {
    const answer = await post({ jsonrpc: "2.0", id: nextId++, method, params: params || {} });
    if (answer.error) throw new RpcError(answer.error);
    return answer.result;
  }

  // [[method, params], ...] -> [result or RpcError, ...], in the order of the calls
  async function batch(calls) {
    const out = [];
    for (let start = 0; start < calls.length; start += MAX_BATCH) {
      const chunk = calls.slice(start, start + MAX_BATCH);
      const first = nextId;
      nextId += chunk.length;
      const answers = await post(
        chunk.map(([method, params], i) => ({ jsonrpc: "2.0", id: first + i, method, params })),
      );
      const byId = new Map((Array.isArray(answers) ? answers : [answers]).map((a) => [a.id, a]));
      chunk.forEach((_call, i) => {
        const answer = byId.get(first + i);
        out.push(answer && !answer.error ? answer.result : new RpcError(answer ? answer.error : {}));
      });
    }
    return out;
  }

  function ok(value) {
    if (value instanceof Error) throw value;
    return value;
  }

  // ---------------------------------------------------------------- live updates

  let live = null; // the socket of the page on screen

  function setLive(on, text) {
    liveBadge.className = on ? "live on" : "live off";
    liveBadge.textContent = text;
  }

  // Subscribe to `params` (a topic of PROTOCOL 5.6) from `fromHeight`; each event to onEvent.
  // A dropped socket is opened again from the height after the last event seen. `page` is
  // the route the page was made for: a page the reader has left follows nothing.
  function follow(page, params, fromHeight, onEvent) {
    if (page !== shown) return;
    stopFollowing();
    const state = { next: fromHeight, socket: null, stopped: false };
    const open = () => {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const socket = new WebSocket(`${scheme}://${location.host}/ws`);
      state.socket = socket;
      socket.onopen = () => {
        const subscription = { ...params, fromHeight: state.next };
        socket.send(
          JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subscribe", params: subscription }),
        );
      };
      socket.onmessage = (message) => {
        const item = JSON.parse(message.data);
        if (item.id === 1 && item.result) setLive(true, "live");
        if (item.error) setLive(false, `not live: ${item.error.message}`);
        if (item.method === "subscription") {
          const event = item.params.result;
          if (typeof event.height === "number") state.next = Math.max(state.next, event.height + 1);
          onEvent(event);
        }
      };
      socket.onclose = () => {
        if (state.stopped) return;
        setLive(false, "reconnecting…");
        setTimeout(() => state.stopped || open(), 2000);
      };
    };
    open();
    live = state;
  }

  function stopFollowing() {
    if (live) {
      live.stopped = true;
      if (live.socket) live.socket.close();
      live = null;
    }
    setLive(false, "not live");
  }

  // ---------------------------------------------------------------- building the page

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.setAttribute("class", value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
  }

  const short = (hex) => (hex && hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-6)}` : hex);

  const blockLink = (height) =>
    height === null || height === undefined
      ? h("span", { class: "muted" }, "—")
      : h("a", { href: `#/block/${height}` }, `#${height}`);

  const taskLink = (hash, text) =>
    h("a", { href: `#/task/${hash}`, class: "hash", title: hash }, text || short(hash));

  const accountLink = (address, text) =>
    h("a", { href: `#/account/${address}`, class: "hash", title: address }, text || short(address));

  const badge = (word) => h("span", { class: `badge ${word}` }, word);

  const time = (seconds) => new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);

  function amount(baseUnits) {
    const value = BigInt(baseUnits);
    const negative = value < 0n;
    const units = negative ? -value : value;
    const whole = units / 10n ** DECIMALS;
    let fraction = (units % 10n ** DECIMALS).toString().padStart(Number(DECIMALS), "0");
    fraction = fraction.slice(0, 6).replace(/0+$/, "");
    const text = whole.toLocaleString("en") + (fraction ? `.${fraction}` : "");
    return h(
      "span",
      { class: "amount", title: `${baseUnits} base units`, "data-base-units": String(baseUnits) },
      negative ? `−${text}` : text,
    );
  }

  function table(headers, rows, attrs) {
    return h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, headers.map((title) => h("th", {}, title)))),
      h("tbody", {}, rows),
    );
  }

  function fields(pairs) {
    return h(
      "dl",
      { class: "fields" },
      pairs.filter(Boolean).map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
    );
  }

  function problemView(error) {
    let title = "Something went wrong";
    let detail = String(error && error.message ? error.message : error);
    if (error instanceof Problem) {
      title = error.message;
      detail = error.detail;
    } else if (error instanceof RpcError) {
      title = `The validator refused the read (${error.code})`;
      detail = [error.message, error.data.reason || error.data.detail].filter(Boolean).join(": ");
    } else if (error instanceof TypeError) {
      title = "The validator cannot be reached";
    }
    return h("div", { class: "problem", id: "problem" }, h("h1", {}, title), h("p", {}, detail));
  }

  // ---------------------------------------------------------------- blocks

  // A row of the blocks list: from getBlock, or from a newBlocks event, which has it all.
  function blockRow(height, seconds, proposer, txs) {
    return h(
      "tr",
      { class: "block", "data-height": height },
      h("td", {}, blockLink(height)),
      h("td", {}, time(seconds)),
      h("td", {}, accountLink(proposer)),
      h("td", { class: "num txs" }, txs),
    );
  }

  async function blocksPage(from) {
    const page = shown;
    if (from !== undefined && !HEIGHT.test(from)) {
      throw new Problem("Not a height", `“${from}” is not a block height (0, 1, 2, …).`);
    }
    const head = await rpc("blockNumber");
    const top = from === undefined ? head : Number(from);
    if (top > head) throw new Problem(`No block ${top} yet`, `The head is block ${head}.`);
    const heights = [];
    for (let height = top; height >= 0 && heights.length < PAGE_BLOCKS; height--) {
      heights.push(height);
    }
    const answers = await batch(heights.map((height) => ["getBlock", { height }]));
    const rows = answers.map(ok).map((b) => blockRow(b.height, b.time, b.proposer, b.txs.length));
    const body = h("tbody", {}, rows);
    const latest = top === head;
    const pager = h(
      "div",
      { class: "pager" },
      latest
        ? h("span", {}, "")
        : h("a", { href: top + PAGE_BLOCKS >= head ? "#/blocks" : `#/blocks/${top + PAGE_BLOCKS}` }, "← newer"),
      top - PAGE_BLOCKS >= 0 ? h("a", { href: `#/blocks/${top - PAGE_BLOCKS}`, id: "older" }, "older →") : h("span", {}, ""),
    );
    const content = h(
      "div",
      {},
      h("h1", {}, "Blocks"),
      h(
        "p",
        { class: "muted" },
        latest
          ? `The latest ${heights.length} blocks, new ones added as they are committed.`
          : `Blocks ${heights[heights.length - 1]} to ${top}.`,
      ),
      h(
        "section",
        {},
        h(
          "table",
          { id: "blocks" },
          h(
            "thead",
            {},
            h("tr", {}, ["Height", "Time (UTC)", "Proposer", "Transactions"].map((t) => h("th", {}, t))),
          ),
          body,
        ),
        pager,
      ),
    );
    if (latest) {
      follow(page, { topic: "newBlocks" }, head + 1, (event) => {
        if (body.querySelector(`tr[data-height="${event.height}"]`)) return;
        const row = blockRow(event.height, event.time, event.proposer, event.txs);
        row.classList.add("fresh");
        // In height order, whichever of two blocks' reads comes back first.
        const below = [...body.children].find((r) => Number(r.dataset.height) < event.height);
        body.insertBefore(row, below || null);
        while (body.children.length > PAGE_BLOCKS) body.lastElementChild.remove();
      });
    }
    return content;
  }

  async function blockPage(text) {
    if (!HEIGHT.test(text)) {
      throw new Problem("Not a height", `“${text}” is not a block height (0, 1, 2, …).`);
    }
    const height = Number(text);
    const [head, block, changed] = await batch([
      ["blockNumber", {}],
      ["getBlock", { height }],
      ["getBlockEvents", { height }],
    ]);
    if (block instanceof RpcError && block.code === -32602) {
      throw new Problem(`No block ${height} yet`, `The head is block ${ok(head)}.`);
    }
    ok(block);
    const events = ok(changed).events;
    const allTxs = events.filter((e) => e.topic === "tx");
    const allTasks = events.filter((e) => e.topic === "task");
    const txs = allTxs.slice(0, MAX_ROWS);
    const tasks = allTasks.slice(0, MAX_ROWS);
    const more = (all, shown) =>
      all.length > shown.length
        ? h("p", { class: "muted" }, `The first ${shown.length} of ${all.length} are shown.`)
        : null;
    const signers = block.commit.map((vote) => vote.validator);
    return h(
      "div",
      {},
      h("h1", {}, `Block ${height}`),
      h(
        "section",
        {},
        fields([
          ["Hash", h("span", { class: "hash" }, block.hash)],
          ["Time (UTC)", time(block.time)],
          ["Proposer", accountLink(block.proposer, block.proposer)],
          ["Previous", height > 0 ? h("a", { href: `#/block/${height - 1}`, class: "hash" }, block.prevHash) : "— (genesis)"],
          ["App hash", h("span", { class: "hash" }, block.appHash)],
          [
            "Committed by",
            signers.length
              ? [signers.length, " precommits: ", signers.map((a) => [accountLink(a), " "])]
              : "no votes (a chain of one validator)",
          ],
          ["Next", height < ok(head) ? h("a", { href: `#/block/${height + 1}` }, `#${height + 1}`) : "— (the head)"],
        ]),
      ),
      h("h2", {}, `Transactions (${allTxs.length})`),
      h(
        "section",
        {},
        txs.length
          ? table(
              ["#", "Hash", "Type", "Sender", "Task", "Status"],
              txs.map((tx) =>
                h(
                  "tr",
                  {},
                  h("td", { class: "num" }, tx.index),
                  h("td", { class: "hash", title: tx.txHash }, short(tx.txHash)),
                  h("td", {}, tx.type),
                  h("td", {}, accountLink(tx.sender)),
                  h("td", {}, tx.taskHash ? taskLink(tx.taskHash) : ""),
                  h("td", {}, tx.status),
                ),
              ),
              { id: "block-txs" },
            )
          : h("p", { class: "muted" }, "No transactions."),
        more(allTxs, txs),
      ),
      h("h2", {}, `What happened to tasks (${allTasks.length})`),
      h(
        "section",
        {},
        tasks.length
          ? table(
              ["Task", "Event", "Details"],
              tasks.map((e) => h("tr", {}, h("td", {}, taskLink(e.taskHash)), h("td", {}, e.event), h("td", {}, eventDetail(e)))),
              { id: "block-tasks" },
            )
          : h("p", { class: "muted" }, "No task changed in this block."),
        more(allTasks, tasks),
      ),
    );
  }

  function eventDetail(e) {
    switch (e.event) {
      case "submitted":
        return `model ${e.model || "—"}`;
      case "result":
        return [accountLink(e.resourceNode), ` rank ${e.rank}`];
      case "verdict":
        return [accountLink(e.verifier), ` judged `, accountLink(e.resourceNode), ` ${e.valid ? "valid" : "invalid"}`];
      case "decided":
        return [accountLink(e.resourceNode), ` ${RESULT_STATUS[e.status] || e.status}`];
      case "settled":
        return [badge(e.status), ` ${e.verificationCount} verification(s)`];
      default:
        return "";
    }
  }

  // ---------------------------------------------------------------- a task

  function timeline(task) {
    const items = [];
    const add = (height, kind, ...text) => items.push({ height, kind, text, order: items.length });
    if (task.createdHeight === null) add(null, "submitted", "submitted: waiting in the mempool");
    else add(task.createdHeight, "submitted", "submitted by ", accountLink(task.sender));
    const results = task.executionInfo;
    if (results.length) {
      const first = Math.min(...results.map((e) => e.height));
      add(first, "processing", "processing: the first result came in");
    }
    for (const entry of results) {
      add(
        entry.height,
        "result",
        `result of rank ${entry.rank} from `,
        accountLink(entry.resourceNode),
        ` (seed ${short(entry.seed)})`,
      );
      for (const verdict of entry.verifications) {
        const word = verdict.valid ? "valid" : "invalid";
        add(verdict.height, word, accountLink(verdict.verifier), ` judged the result of `, accountLink(entry.resourceNode), ` ${word}`);
      }
      if (entry.decidedHeight !== null) {
        const word = RESULT_STATUS[entry.status];
        add(entry.decidedHeight, word, "the result of ", accountLink(entry.resourceNode), ` is ${word}`);
      }
    }
    if (task.finishedHeight !== null) add(task.finishedHeight, task.status, `the task is ${task.status}`);
    if (task.settlement) {
      const s = task.settlement;
      add(s.height, "settled", `settled: ${s.payouts.length} paid, ${s.slashed.length} slashed`);
    }
    items.sort((a, b) => (a.height ?? Infinity) - (b.height ?? Infinity) || a.order - b.order);
    return h(
      "ol",
      { class: "timeline", id: "timeline" },
      items.map((item) =>
        h("li", { class: item.kind }, h("span", { class: "at" }, blockLink(item.height)), item.text),
      ),
    );
  }

  function resultsTable(task) {
    if (!task.executionInfo.length) return h("p", { class: "muted" }, "No result yet.");
    return table(
      ["Rank", "Resource node", "Seed", "Status", "Verdicts", "Result"],
      task.executionInfo.map((entry) =>
        h(
          "tr",
          { "data-node": entry.resourceNode },
          h("td", { class: "num" }, entry.rank),
          h("td", {}, accountLink(entry.resourceNode)),
          h("td", { class: "mono", title: entry.seed }, short(entry.seed)),
          h("td", {}, badge(RESULT_STATUS[entry.status]), entry.forcedError ? " (forced error)" : ""),
          h(
            "td",
            {},
            entry.verifications.length
              ? entry.verifications.map((v) => h("div", {}, badge(v.valid ? "valid" : "invalid"), " ", accountLink(v.verifier)))
              : h("span", { class: "muted" }, "none"),
          ),
          h("td", {}, h("pre", {}, entry.result)),
        ),
      ),
      { id: "results" },
    );
  }

  // Who was paid and who was slashed: a row and a bar each.
  function settlementLines(s) {
    return [
      ...s.payouts.map((p) => ({ kind: "paid", address: p.address, amount: BigInt(p.amount), what: `${p.role}, rank ${p.rank}` })),
      ...s.slashed.map((p) => ({ kind: "slashed", address: p.address, amount: BigInt(p.amount), what: `slashed: ${p.reason}` })),
    ];
  }

  function settlementChart(lines) {
    const rowHeight = 26;
    const label = 170;
    const width = 720;
    const barSpace = width - label - 140;
    const max = lines.reduce((m, line) => (line.amount > m ? line.amount : m), 1n);
    const chart = svg("svg", {
      class: "chart",
      id: "settlement-chart",
      viewBox: `0 0 ${width} ${rowHeight * lines.length + 10}`,
      role: "img",
      "aria-label": "who was paid and who was slashed",
    });
    lines.forEach((line, i) => {
      const y = 5 + i * rowHeight;
      const length = Math.max(2, (Number((line.amount * 10000n) / max) / 10000) * barSpace);
      append(chart, [
        svg("text", { x: 0, y: y + 16 }, short(line.address)),
        svg(
          "rect",
          { class: `bar ${line.kind}`, x: label, y: y + 3, width: length.toFixed(1), height: rowHeight - 8, "data-address": line.address },
          svg("title", {}, `${line.address} ${line.what}: ${line.amount} base units`),
        ),
        svg("text", { x: label + length + 6, y: y + 16, class: "axis" }, `${line.kind === "slashed" ? "−" : "+"}${amount(line.amount.toString()).textContent} (${line.what})`),
      ]);
    });
    return chart;
  }

  function settlementView(task) {
    const s = task.settlement;
    if (!s) {
      return h("p", { class: "muted", id: "no-settlement" }, "Not settled yet: the task is still open.");
    }
    const lines = settlementLines(s);
    return h(
      "div",
      {},
      fields([
        ["Settled at", blockLink(s.height)],
        ["Fee", amount(s.fee)],
        ["Network reward", amount(s.networkReward)],
        ["Refunded to the sender", amount(s.refund)],
        ["Burned", amount(s.burned)],
      ]),
      table(
        ["Account", "Role", "Amount"],
        lines.map((line) =>
          h(
            "tr",
            { class: line.kind, "data-address": line.address },
            h("td", {}, accountLink(line.address, line.address)),
            h("td", {}, badge(line.kind), ` ${line.what}`),
            h("td", { class: "num" }, line.kind === "slashed" ? "−" : "+", amount(line.amount.toString())),
          ),
        ),
        { id: "settlement" },
      ),
      lines.length ? settlementChart(lines) : h("p", { class: "muted" }, "Nobody was paid or slashed."),
      h("p", { class: "legend" }, h("span", { class: "paid" }, "■ paid"), "  ", h("span", { class: "slashed" }, "■ slashed")),
    );
  }

  function taskView(task) {
    return h(
      "div",
      { id: "task", "data-status": task.status },
      h("h1", {}, "Task ", h("span", { class: "hash" }, task.taskHash), " ", badge(task.status)),
      h(
        "section",
        {},
        fields([
          ["Sender", accountLink(task.sender, task.sender)],
          ["Model", task.model || "—"],
          ["Results wanted", task.targetCount],
          ["Fee", amount(task.fee)],
          ["Submitted in", blockLink(task.createdHeight)],
          ["Finished in", blockLink(task.finishedHeight)],
          ["Verifications", task.verificationCount],
          ["Prompts", h("pre", {}, task.prompts)],
          ["Response", task.response === null ? h("span", { class: "muted" }, "none yet") : h("pre", { id: "response" }, task.response)],
        ]),
      ),
      h("h2", {}, "Timeline"),
      h("section", {}, timeline(task)),
      h("h2", {}, "Results"),
      h("section", {}, resultsTable(task)),
      h("h2", {}, "Settlement"),
      h("section", {}, settlementView(task)),
    );
  }

  async function taskPage(hash) {
    const page = shown;
    if (!HASH.test(hash)) {
      throw new Problem("Not a task hash", `“${hash.slice(0, 80)}” is not 0x and 64 hex digits.`);
    }
    const [task, head] = await batch([
      ["queryTask", { taskHash: hash }],
      ["blockNumber", {}],
    ]);
    let content;
    if (task instanceof RpcError && task.code === -32003) {
      // Not on this chain, or not yet: the page shows it once a block takes it.
      const missing = new Problem(
        `No task ${hash}`,
        "This chain has no task with this hash, committed or waiting in the mempool. " +
          "This page shows it if a block takes one.",
      );
      content = h("div", {}, problemView(missing));
    } else {
      content = h("div", {}, taskView(ok(task)));
    }
    follow(page, { topic: "task", taskHash: hash }, ok(head) + 1, async () => {
      const fresh = await rpc("queryTask", { taskHash: hash });
      content.replaceChildren(taskView(fresh));
    });
    return content;
  }

  // ---------------------------------------------------------------- an account

  async function accountPage(address, fromText) {
    if (!ADDRESS.test(address)) {
      throw new Problem("Not an address", `“${address.slice(0, 80)}” is not 0x and 40 hex digits.`);
    }
    if (fromText !== undefined && !HEIGHT.test(fromText)) {
      throw new Problem("Not a nonce", `“${fromText}” is not a nonce (0, 1, 2, …).`);
    }
    const fromNonce = fromText === undefined ? 0 : Number(fromText);
    const [account, tasks, validators] = await batch([
      ["getAccount", { address }],
      ["getTasksBySender", { address, fromNonce, limit: TASKS_PAGE }],
      ["getValidators", {}],
    ]);
    if (account instanceof RpcError && account.code === -32602) {
      throw new Problem("Not an address", account.data.reason || account.message);
    }
    ok(account);
    const validator = ok(validators).find((v) => v.address.toLowerCase() === address.toLowerCase());
    const list = ok(tasks);
    const next = list.length === TASKS_PAGE ? list[list.length - 1].nonce + 1 : null;
    return h(
      "div",
      {},
      h("h1", {}, "Account ", h("span", { class: "hash" }, account.address)),
      h(
        "section",
        {},
        fields([
          ["Balance", amount(account.balance)],
          ["Stake", amount(account.stake)],
          ["Nonce", account.nonce],
          ["Role", validator ? "validator" : account.resourceNode ? "resource node" : "account"],
          account.resourceNode && ["Jailed", account.jailed ? badge("jailed") : "no"],
          account.resourceNode && ["Models", account.resourceNode.models],
          account.resourceNode && ["Endpoint", account.resourceNode.endpoint || "—"],
          ["At block", blockLink(account.blockHeight)],
        ]),
      ),
      h("h2", {}, "Tasks submitted"),
      h(
        "section",
        {},
        list.length
          ? table(
              ["Nonce", "Task", "Status", "Model", "Submitted in", "Fee"],
              list.map((task) =>
                h(
                  "tr",
                  {},
                  h("td", { class: "num" }, task.nonce),
                  h("td", {}, taskLink(task.taskHash)),
                  h("td", {}, badge(task.status)),
                  h("td", {}, task.model || "—"),
                  h("td", {}, blockLink(task.createdHeight)),
                  h("td", { class: "num" }, amount(task.fee)),
                ),
              ),
              { id: "account-tasks" },
            )
          : h("p", { class: "muted" }, fromNonce ? "No more tasks." : "This account has submitted no task."),
        next === null ? null : h("div", { class: "pager" }, h("span", {}, ""), h("a", { href: `#/account/${address}/${next}` }, "more →")),
      ),
    );
  }

  // ---------------------------------------------------------------- resource nodes

  function earningsChart(address, heights, accounts) {
    const width = 220;
    const height = 48;
    const base = BigInt(accounts[0].balance);
    const baseStake = BigInt(accounts[0].stake);
    const earned = accounts.map((a) => BigInt(a.balance) - base);
    const stake = accounts.map((a) => BigInt(a.stake) - baseStake);
    const all = [...earned, ...stake, 0n];
    const top = all.reduce((m, v) => (v > m ? v : m), 0n);
    const bottom = all.reduce((m, v) => (v < m ? v : m), 0n);
    const span = top - bottom;
    const x = (i) => ((i / Math.max(1, accounts.length - 1)) * (width - 4) + 2).toFixed(1);
    const y = (v) =>
      span === 0n
        ? (height / 2).toFixed(1)
        : (2 + (Number(((top - v) * 10000n) / span) / 10000) * (height - 4)).toFixed(1);
    const points = (values) => values.map((v, i) => `${x(i)},${y(v)}`).join(" ");
    return svg(
      "svg",
      { class: "chart spark earnings-chart", viewBox: `0 0 ${width} ${height}`, "data-address": address, role: "img" },
      svg("title", {}, `balance earned over blocks ${heights[0]}–${heights[heights.length - 1]}`),
      svg("line", { class: "zero", x1: 0, x2: width, y1: y(0n), y2: y(0n) }),
      svg("polyline", { class: "earnings", points: points(earned) }),
      stake.some((v) => v !== 0n) ? svg("polyline", { class: "stake", points: points(stake) }) : null,
    );
  }

  async function nodesPage() {
    const [nodes, head] = await batch([
      ["getResourceNodes", {}],
      ["blockNumber", {}],
    ]);
    const list = ok(nodes);
    const last = ok(head);
    const heights = [];
    for (let height = Math.max(0, last - HISTORY_BLOCKS + 1); height <= last; height++) heights.push(height);
    const history = await batch(
      list.flatMap((node) => heights.map((height) => ["getAccount", { address: node.address, blockHeight: height }])),
    );
    const rows = list.map((node, n) => {
      const accounts = history.slice(n * heights.length, (n + 1) * heights.length).map(ok);
      const earned = BigInt(accounts[accounts.length - 1].balance) - BigInt(accounts[0].balance);
      const stakeChange = BigInt(accounts[accounts.length - 1].stake) - BigInt(accounts[0].stake);
      return h(
        "tr",
        { class: "node", "data-address": node.address },
        h("td", {}, accountLink(node.address, node.address)),
        h("td", { class: "num" }, amount(node.stake)),
        h("td", { class: "jailed" }, node.jailed ? badge("jailed") : "no"),
        h("td", {}, node.models),
        h("td", { class: "num" }, amount(earned.toString()), stakeChange < 0n ? h("div", { class: "muted" }, "stake ", amount(stakeChange.toString())) : null),
        h("td", {}, earningsChart(node.address, heights, accounts)),
      );
    });
    return h(
      "div",
      {},
      h("h1", {}, "Resource nodes"),
      h(
        "p",
        { class: "muted" },
        `Earnings: the change of each node's balance over the last ${heights.length} blocks (${heights[0]}–${last}); a dashed line is its stake, when a slash took some.`,
      ),
      h(
        "section",
        {},
        list.length
          ? table(["Address", "Stake", "Jailed", "Models", `Earned (${heights.length} blocks)`, "Earnings over blocks"], rows, { id: "nodes" })
          : h("p", { class: "muted" }, "No resource node is registered."),
      ),
    );
  }

  // ---------------------------------------------------------------- validators

  async function validatorsPage() {
    const [validators, head] = await batch([
      ["getValidators", {}],
      ["blockNumber", {}],
    ]);
    const list = ok(validators);
    const last = ok(head);
    const heights = [];
    for (let height = last; height >= 1 && heights.length < SIGNED_WINDOW; height--) heights.push(height);
    const blocks = (await batch(heights.map((height) => ["getBlock", { height }]))).map(ok);
    const signed = new Map();
    const proposed = new Map();
    for (const block of blocks) {
      proposed.set(block.proposer.toLowerCase(), (proposed.get(block.proposer.toLowerCase()) || 0) + 1);
      for (const vote of new Set(block.commit.map((v) => v.validator.toLowerCase()))) {
        signed.set(vote, (signed.get(vote) || 0) + 1);
      }
    }
    const total = list.reduce((sum, v) => sum + BigInt(v.stake), 0n) || 1n;
    const voted = blocks.some((block) => block.commit.length);
    const rows = list.map((v) => {
      const key = v.address.toLowerCase();
      return h(
        "tr",
        { class: "validator", "data-address": v.address },
        h("td", {}, accountLink(v.address, v.address)),
        h("td", { class: "num" }, amount(v.stake)),
        h("td", { class: "num" }, `${(Number((BigInt(v.stake) * 10000n) / total) / 100).toFixed(2)} %`),
        h("td", { class: "num signed" }, voted ? `${signed.get(key) || 0} / ${blocks.length}` : "—"),
        h("td", { class: "num" }, proposed.get(key) || 0),
        h("td", {}, v.url),
      );
    });
    const span = heights.length ? `blocks ${heights[heights.length - 1]}–${last}` : "no block yet";
    return h(
      "div",
      {},
      h("h1", {}, "Validators"),
      h(
        "p",
        { class: "muted", id: "signed-window" },
        voted
          ? `Signed: the blocks whose commit holds the validator's precommit, over the last ${blocks.length} blocks (${span}).`
          : `A chain of one validator commits its blocks without votes (${span}).`,
      ),
      h("section", {}, table(["Address", "Power (stake)", "Share", "Signed blocks", "Proposed", "URL"], rows, { id: "validators" })),
    );
  }

  // ---------------------------------------------------------------- routes

  const ROUTES = [
    [/^\/?$/, () => blocksPage(undefined), "blocks"],
    [/^\/blocks\/?$/, () => blocksPage(undefined), "blocks"],
    [/^\/blocks\/([^/]*)$/, (m) => blocksPage(m[1]), "blocks"],
    [/^\/block\/([^/]*)$/, (m) => blockPage(m[1]), "blocks"],
    [/^\/task\/([^/]*)$/, (m) => taskPage(m[1]), null],
    [/^\/account\/([^/]*)$/, (m) => accountPage(m[1], undefined), null],
    [/^\/account\/([^/]*)\/([^/]*)$/, (m) => accountPage(m[1], m[2]), null],
    [/^\/nodes\/?$/, () => nodesPage(), "nodes"],
    [/^\/validators\/?$/, () => validatorsPage(), "validators"],
  ];

  let shown = 0; // the number of the last route asked for: a slower earlier one is dropped

  async function route() {
    stopFollowing();
    const mine = ++shown;
    let path;
    try {
      path = decodeURIComponent(location.hash.replace(/^#/, ""));
    } catch (_error) {
      path = location.hash.replace(/^#/, "");
    }
    const found = ROUTES.map(([pattern, page, nav]) => [pattern.exec(path), page, nav]).find(([m]) => m);
    for (const link of document.querySelectorAll("header nav a")) {
      link.classList.toggle("current", Boolean(found) && link.dataset.nav === found[2]);
    }
    view.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    let content;
    try {
      if (!found) {
        throw new Problem(
          `No page ${path.slice(0, 80)}`,
          "The explorer has #/blocks, #/block/<height>, #/task/<hash>, #/account/<address>, #/nodes and #/validators.",
        );
      }
      content = await found[1](found[0]);
    } catch (error) {
      if (mine === shown) stopFollowing();
      content = problemView(error);
    }
    if (mine === shown) view.replaceChildren(content);
  }

  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = document.getElementById("search-input").value.trim();
    if (HEIGHT.test(text)) location.hash = `#/block/${text}`;
    else if (ADDRESS.test(text)) location.hash = `#/account/${text}`;
    else location.hash = `#/task/${text}`;
  });
  window.addEventListener("hashchange", route);
  route();
})();
