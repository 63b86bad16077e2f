// A dApp on inferchain in JavaScript: sign a SubmitTask with ethers v6 (EIP-712, PROTOCOL 3),
// submit it with fetch, follow the task over the validator's WebSocket (GET /ws, PROTOCOL 5.6)
// until it is settled, then show the settlement (PROTOCOL 4.8) and check it against queryTask.
//
//   cd examples/js && npm ci && node dapp.mjs [--rpc http://127.0.0.1:8545] [--key FILE]
//
// Node 18 or later (fetch); the WebSocket is the `ws` package, since Node has no global
// WebSocket before 22. It signs as dev account 0 of the dev mnemonic, or with the key in
// --key FILE. Exit status: 0 when the settlement the subscription told is queryTask's, 1 when
// it is not, 2 for a bad option, 3 when the validator cannot be reached, refuses the task or
// does not settle it in --timeout seconds.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { Wallet, ZeroHash, hexlify, toUtf8Bytes } from "ethers";
import WebSocket from "ws";

// Dev account 0 of the dev mnemonic; on a real chain, your own key (--key FILE).
const DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
// executionInfo[].status (PROTOCOL 4): what a decided result is
const RESULT_STATUSES = ["pending", "verifying", "verified", "rejected", "unverified"];
const [MATCHED, MISMATCHED, BAD_OPTION, UNREACHABLE] = [0, 1, 2, 3];

class ChainError extends Error {}

function options() {
  const { values } = parseArgs({
    options: {
      rpc: { type: "string", default: "http://127.0.0.1:8545" },
      prompt: { type: "string", default: "Translate to French: Hello, world!" },
      model: { type: "string", default: "demo" },
      key: { type: "string" },
      timeout: { type: "string", default: "120" },
    },
  });
  const timeout = Number(values.timeout);
  if (!(timeout > 0)) throw new Error(`--timeout: seconds, more than 0, got ${values.timeout}`);
  let key = DEV_KEY;
  if (values.key !== undefined) {
    try {
      key = readFileSync(values.key, "utf8").trim();
    } catch (error) {
      throw new Error(`--key ${values.key}: cannot read it (${error.code})`);
    }
  }
  let wallet;
  try {
    wallet = new Wallet(key.startsWith("0x") ? key : `0x${key}`);
  } catch (error) {
    throw new Error(`--key ${values.key}: not a private key (${error.shortMessage ?? error})`);
  }
  return { ...values, rpc: values.rpc.replace(/\/+$/, ""), timeout, wallet };
}

let ids = 0;

async function call(rpc, method, params) {
  let response;
  try {
    response = await fetch(rpc, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: ++ids, method, params }),
    });
  } catch (error) {
    throw new ChainError(`${rpc}: ${error.cause?.message ?? error.message}`);
  }
  const { result, error } = await response.json();
  if (error) {
    throw new ChainError(`${method}: ${error.message} (${error.code}) ${JSON.stringify(error.data)}`);
  }
  return result;
}

// Sign and send a SubmitTask: the fields as text, signed as their UTF-8 bytes (PROTOCOL 3).
async function submitTask(rpc, wallet, prompts, modelOptions) {
  const chainId = await call(rpc, "chainId", []);
  // The nonce to sign: the next one, counting this account's transactions in the mempool.
  const { pendingNonce } = await call(rpc, "getAccount", { address: wallet.address });
  const domain = { name: "AegisAI", version: "1", chainId };
  const types = {
    SubmitTask: [
      { name: "sender", type: "address" },
      { name: "nonce", type: "uint64" },
      { name: "schema", type: "bytes" },
      { name: "targetCount", type: "uint256" },
      { name: "prompts", type: "bytes" },
      { name: "modelOptions", type: "bytes" },
      { name: "SID", type: "bytes32" },
      { name: "feeParams", type: "bytes" },
    ],
  };
  const task = {
    sender: wallet.address,
    nonce: pendingNonce,
    schema: "text",
    targetCount: 1,
    prompts,
    modelOptions,
    SID: ZeroHash,
    feeParams: "",
  };
  const utf8 = (text) => hexlify(toUtf8Bytes(text));
  const signature = await wallet.signTypedData(domain, types, {
    ...task,
    schema: utf8(task.schema),
    prompts: utf8(task.prompts),
    modelOptions: utf8(task.modelOptions),
    feeParams: utf8(task.feeParams),
  });
  const { taskHash } = await call(rpc, "submitTask", { ...task, signature });
  return taskHash;
}

// Every event of the task from `fromHeight` on, given to `onEvent`, until it returns true.
function follow(rpc, taskHash, fromHeight, timeoutS, onEvent) {
  const url = `${rpc.replace(/^http/, "ws")}/ws`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new ChainError(`the task was not settled in ${timeoutS} s`));
    }, timeoutS * 1000);
    const fail = (error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(error);
    };
    ws.on("open", () => {
      const params = { topic: "task", taskHash, fromHeight };
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "subscribe", params }));
    });
    ws.on("message", (data) => {
      const body = JSON.parse(data.toString());
      if (body.id === 1 && body.error) {
        fail(new ChainError(`subscribe: ${body.error.message} ${JSON.stringify(body.error.data)}`));
      } else if (body.method === "subscription" && onEvent(body.params.result)) {
        clearTimeout(timer);
        ws.close();
        resolve();
      }
    });
    ws.on("error", (error) => fail(new ChainError(`${url}: ${error.message}`)));
    ws.on("close", (code, reason) => fail(new ChainError(`${url} closed: ${code} ${reason}`)));
  });
}

function describe(event) {
  const where = `block ${event.height}: ${event.event}`;
  switch (event.event) {
    case "submitted":
      return `${where} (model ${event.model})`;
    case "result":
      return `${where} from ${event.resourceNode} (rank ${event.rank}): ${JSON.stringify(event.result)}`;
    case "verdict":
      return `${where} of ${event.verifier} on ${event.resourceNode}'s result: ${event.valid ? "valid" : "invalid"}`;
    case "decided":
      return `${where}: ${event.resourceNode}'s result is ${RESULT_STATUSES[event.status] ?? event.status}`;
    case "settled":
      return `${where}: the task is ${event.status}, response ${JSON.stringify(event.response)}`;
    default:
      return `${where} ${JSON.stringify(event)}`;
  }
}

function settlementLines(settlement) {
  const lines = [
    `settlement at block ${settlement.height}: fee ${settlement.fee}, network reward ` +
      `${settlement.networkReward}, refund ${settlement.refund}, burned ${settlement.burned}`,
  ];
  for (const payout of settlement.payouts) {
    lines.push(`  paid ${payout.address} ${payout.amount} (${payout.role}, rank ${payout.rank})`);
  }
  for (const slash of settlement.slashed) {
    lines.push(`  slashed ${slash.address} ${slash.amount} (${slash.reason})`);
  }
  if (settlement.payouts.length === 0) lines.push("  nobody was paid");
  if (settlement.slashed.length === 0) lines.push("  nobody was slashed");
  return lines;
}

// JSON with every object's keys sorted, so that two values compare as text.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

async function main() {
  let args;
  try {
    args = options();
  } catch (error) {
    console.error(error.message);
    return BAD_OPTION;
  }
  const { rpc, wallet } = args;
  try {
    // The height before the task: the subscription replays from there, so that no event of
    // the task is missed however soon it comes.
    const height = await call(rpc, "blockNumber", []);
    const taskHash = await submitTask(
      rpc,
      wallet,
      JSON.stringify({ prompt: args.prompt }),
      JSON.stringify({ model: args.model }),
    );
    console.log(`task ${taskHash} submitted by ${wallet.address}`);
    let settled;
    await follow(rpc, taskHash, height, args.timeout, (event) => {
      console.log(describe(event));
      if (event.event !== "settled") return false;
      settled = event;
      return true;
    });
    for (const line of settlementLines(settled.settlement)) console.log(line);
    console.log(`settlement ${canonical(settled.settlement)}`);

    const task = await call(rpc, "queryTask", { taskHash });
    if (canonical(task.settlement) !== canonical(settled.settlement) || task.status !== settled.status) {
      console.log(`queryTask answers another settlement: ${canonical(task.settlement)}`);
      return MISMATCHED;
    }
    console.log(`verified: queryTask shows the same settlement (task ${task.status})`);
    return MATCHED;
  } catch (error) {
    if (!(error instanceof ChainError)) throw error;
    console.error(error.message);
    return UNREACHABLE;
  }
}

process.exitCode = await main();
