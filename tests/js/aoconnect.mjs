// @permaweb/aoconnect's legacy mode against a local AO unit, for tests/e2e/test_aoconnect.py.
//   node aoconnect.mjs <unit URL> <Arweave JWK file> <Ethereum private key, hex>
// MU_URL, CU_URL and GATEWAY_URL are all the unit's URL. The script publishes a Lua module
// (a Type Module data item signed by the JWK, POSTed to the MU), spawns a process of it with
// aoconnect's spawn (the scheduler the unit's address, from GET /), messages it (Action =
// Ping) from the JWK and from an Ethereum signer, reads the results (result, results),
// dry-runs a Ping, and tries an unknown module and an unknown message; it prints one JSON
// summary on stdout. Any request to a host other than the loopback fails the script.
import { readFileSync } from "node:fs";
import { ArweaveSigner, createData } from "arbundles";
import { Wallet, getBytes } from "ethers";

const [unitUrl, jwkFile, ethKey] = process.argv.slice(2);
if (!unitUrl || !jwkFile || !ethKey) {
  process.stderr.write("usage: node aoconnect.mjs <unit URL> <JWK file> <Ethereum key hex>\n");
  process.exit(2);
}
const jwk = JSON.parse(readFileSync(jwkFile, "utf8"));

// Every request stays on this machine: aoconnect's defaults name public hosts.
const realFetch = globalThis.fetch;
const requests = [];
globalThis.fetch = async (input, init) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    throw new Error(`refused a request to ${url.href}: only the local unit is reached`);
  }
  requests.push(`${(init?.method ?? "GET").toUpperCase()} ${url.pathname}`);
  return realFetch(input, init);
};
// imported after the guard: aoconnect keeps the fetch it finds when it loads
const { connect, createDataItemSigner } = await import("@permaweb/aoconnect");

const PINGER = `
Handlers.add("ping", Handlers.utils.hasMatchingTag("Action", "Ping"), function (msg)
  Pings = (Pings or 0) + 1
  print("ping " .. Pings .. " from " .. msg.From)
  msg.reply({ Data = "pong " .. Pings })
end)
`;
const MODULE_TAGS = [
  { name: "Data-Protocol", value: "ao" },
  { name: "Variant", value: "ao.TN.1" },
  { name: "Type", value: "Module" },
  { name: "Module-Format", value: "inferchain-lua-5.4" },
  { name: "Input-Encoding", value: "JSON-1" },
  { name: "Output-Encoding", value: "JSON-1" },
  { name: "Content-Type", value: "text/x-lua" },
];

/** aoconnect's signer interface over an Ethereum key: ANS-104 signature type 3. */
function ethereumSigner(wallet) {
  const publicKey = getBytes(wallet.signingKey.publicKey);
  return async (create, kind) => {
    if (kind !== "ans104") throw new Error(`this signer signs data items, not ${kind}`);
    const deepHash = await create({ type: 3, publicKey });
    return { signature: getBytes(await wallet.signMessage(deepHash)), address: wallet.address };
  };
}

async function publishModule(source) {
  const signer = new ArweaveSigner(jwk);
  const item = createData(source, signer, { tags: MODULE_TAGS });
  await item.sign(signer);
  const res = await fetch(unitUrl, {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream" },
    body: item.getRaw(),
  });
  if (!res.ok) throw new Error(`publishing the module: ${res.status} ${await res.text()}`);
  const body = await res.json();
  if (body.id !== item.id) throw new Error(`the unit named the module ${body.id}, not ${item.id}`);
  return item.id;
}

async function errorOf(promise) {
  try {
    await promise;
    return null;
  } catch (err) {
    return String(err?.message ?? err);
  }
}

const unit = await (await fetch(unitUrl)).json();
const ao = connect({ MODE: "legacy", MU_URL: unitUrl, CU_URL: unitUrl, GATEWAY_URL: unitUrl });
const signer = createDataItemSigner(jwk);
const eth = new Wallet(ethKey.startsWith("0x") ? ethKey : `0x${ethKey}`);

const module = await publishModule(PINGER);
const processId = await ao.spawn({
  module,
  scheduler: unit.Address,
  signer,
  tags: [{ name: "Name", value: "aoconnect-pinger" }],
});
const messageId = await ao.message({
  process: processId,
  signer,
  tags: [{ name: "Action", value: "Ping" }],
  data: "ping",
});
const result = await ao.result({ message: messageId, process: processId });
const ethMessageId = await ao.message({
  process: processId,
  signer: ethereumSigner(eth),
  tags: [{ name: "Action", value: "Ping" }],
});
const ethResult = await ao.result({ message: ethMessageId, process: processId });
const dryrun = await ao.dryrun({
  process: processId,
  tags: [{ name: "Action", value: "Ping" }],
  Owner: eth.address,
});
const results = await ao.results({ process: processId, sort: "DESC", limit: 2 });

const UNKNOWN = `${"P".repeat(42)}A`; // an id in canonical base64url
const errors = {
  spawnUnknownModule: await errorOf(
    ao.spawn({ module: "M".repeat(43), scheduler: unit.Address, signer }),
  ),
  spawnBadScheduler: await errorOf(ao.spawn({ module, scheduler: "S".repeat(43), signer })),
  messageUnknownProcess: await errorOf(
    ao.message({ process: UNKNOWN, signer, tags: [{ name: "Action", value: "Ping" }] }),
  ),
  resultUnknownMessage: await ao.result({ message: "Q".repeat(43), process: processId }),
  dryrunUnknownProcess: await ao.dryrun({ process: UNKNOWN, tags: [] }),
};

process.stdout.write(
  JSON.stringify({
    unit: unit.Address,
    module,
    processId,
    messageId,
    result,
    ethAddress: eth.address,
    ethMessageId,
    ethResult,
    dryrun,
    results,
    errors,
    requests,
  }) + "\n",
);
