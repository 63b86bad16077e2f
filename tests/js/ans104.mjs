// ANS-104 data items made and checked by arbundles, the client AO users sign with, for
// tests/unit/test_ans104_interop.py. Reads one JSON request on stdin:
//   {"create": [{"signer": {"ethereum": "<hex key>"} | {"arweave": <JWK>},
//                "data": "<hex>", "target": "<base64url>" | null, "anchor": "<hex>" | null,
//                "tags": [[name, value], ...]}, ...],
//    "verify": ["<hex item>", ...]}
// and writes one JSON answer on stdout:
//   {"created": [{"raw": "<hex>", "id": "..."}, ...],
//    "verified": [{"valid": bool, "id": "...", "owner": "<base64url>", "target": "...",
//                  "anchor": "<hex>", "tags": [[name, value], ...], "data": "<hex>"}, ...]}
import { ArweaveSigner, DataItem, EthereumSigner, createData } from "arbundles";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function signerOf(spec) {
  if (spec.ethereum !== undefined) return new EthereumSigner(spec.ethereum);
  if (spec.arweave !== undefined) return new ArweaveSigner(spec.arweave);
  throw new Error(`unknown signer ${JSON.stringify(spec)}`);
}

async function create(request) {
  const signer = signerOf(request.signer);
  const opts = { tags: (request.tags ?? []).map(([name, value]) => ({ name, value })) };
  if (request.target) opts.target = request.target;
  if (request.anchor) opts.anchor = Buffer.from(request.anchor, "hex");
  const item = createData(Buffer.from(request.data, "hex"), signer, opts);
  await item.sign(signer);
  return { raw: Buffer.from(item.getRaw()).toString("hex"), id: item.id };
}

async function check(hex) {
  const raw = Buffer.from(hex, "hex");
  const valid = await DataItem.verify(raw);
  const item = new DataItem(raw);
  return {
    valid,
    id: item.id,
    owner: item.owner,
    target: item.target,
    anchor: Buffer.from(item.rawAnchor).toString("hex"),
    tags: item.tags.map((tag) => [tag.name, tag.value]),
    data: Buffer.from(item.rawData).toString("hex"),
  };
}

const request = await readStdin();
const created = [];
for (const item of request.create ?? []) created.push(await create(item));
const verified = [];
for (const hex of request.verify ?? []) verified.push(await check(hex));
process.stdout.write(JSON.stringify({ created, verified }) + "\n");
