// The official `replicate` npm client, unchanged, against a mediagen stack (docs/design.md,
// "Replicate-compatible API"): only its base URL and token are ours. Its `stream()` creates a
// prediction, then fetches the prediction's `urls.stream` with `Accept: text/event-stream` and
// nothing else (no key: the link is signed; no `Last-Event-ID`, and it never reconnects), and ends
// at the `done` event; an `error` event makes it throw.
//
//   MEDIAGEN_API_URL=http://127.0.0.1:9000 MEDIAGEN_API_KEY=<key> \
//     node --test tests/replicate_npm/replicate.test.mjs
//
// scripts/test.sh installs the pinned client (package-lock.json) with `npm ci` and runs it.

import assert from "node:assert/strict";
import { test } from "node:test";

import Replicate from "replicate";

const API_URL = (process.env.MEDIAGEN_API_URL || "").replace(/\/+$/, "");
const KEY = process.env.MEDIAGEN_API_KEY || "";
if (!API_URL || !KEY) {
  throw new Error("set MEDIAGEN_API_URL and MEDIAGEN_API_KEY (scripts/test.sh does)");
}

// A job on the local stack takes about a second; allow for a cold function.
const TIMEOUT_MS = 60_000;
const INPUT = { prompt: "a red fox in the snow", width: 256, height: 256 };

const client = () => new Replicate({ baseUrl: `${API_URL}/v1`, auth: KEY });

/** (width, height) of a PNG, read from its IHDR chunk. */
function pngSize(bytes) {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "a PNG signature");
  assert.equal(Buffer.from(bytes.subarray(12, 16)).toString("latin1"), "IHDR", "the first chunk is IHDR");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

/** The bytes at `url`, fetched as anyone would: no key, the link is its own authorisation. */
async function download(url) {
  const answer = await fetch(url);
  assert.equal(answer.status, 200, `GET ${url}`);
  return new Uint8Array(await answer.arrayBuffer());
}

test("stream() yields status, logs and output events and ends on done", { timeout: TIMEOUT_MS }, async () => {
  const events = [];
  for await (const event of client().stream("mediagen/local", { input: INPUT })) {
    events.push(event);
  }
  const names = events.map((event) => event.event);
  // The loop finished: the client stops reading at `done`, which is the last event.
  assert.equal(names.at(-1), "done", `events: ${names}`);
  assert.equal(events.at(-1).data, "{}");
  assert.deepEqual(
    events.map((event) => event.id),
    events.map((_, index) => String(index)),
    "each event carries its place as its id",
  );
  const firstOutput = names.indexOf("output");
  assert.ok(firstOutput > 0, `an output event: ${names}`);
  assert.ok(names.slice(0, firstOutput).includes("status"), `a status event before the first output: ${names}`);
  assert.deepEqual(JSON.parse(events[0].data), { status: "queued" });
  assert.ok(names.includes("logs"), `a logs event: ${names}`);
  const statuses = events.filter((event) => event.event === "status").map((event) => JSON.parse(event.data).status);
  assert.equal(statuses.at(-1), "succeeded");

  const outputs = events.filter((event) => event.event === "output");
  assert.equal(outputs.length, 1, "one image asked, one output");
  for (const output of outputs) {
    // A string: the client makes file streams only of outputs of a stream under /v1/files/.
    assert.equal(typeof output.data, "string");
    const url = new URL(output.data);
    assert.match(url.pathname, /\/v1\/files\/[0-9a-f-]{36}$/);
    assert.deepEqual(pngSize(await download(url)), [INPUT.width, INPUT.height]);
  }
});

test("predictions.create() with stream: true answers a signed urls.stream", { timeout: TIMEOUT_MS }, async () => {
  const prediction = await client().predictions.create({ version: "local", input: INPUT, stream: true });
  assert.equal(typeof prediction.urls?.stream, "string", JSON.stringify(prediction.urls));
  const url = new URL(prediction.urls.stream);
  assert.equal(url.pathname, `${new URL(API_URL).pathname.replace(/\/$/, "")}/v1/predictions/${prediction.id}/stream`);
  assert.ok(url.searchParams.get("expires") && url.searchParams.get("signature"), `signed: ${url}`);
  // As the client reads it: no key, only Accept.
  const answer = await fetch(url, { headers: { Accept: "text/event-stream" } });
  assert.equal(answer.status, 200);
  assert.match(answer.headers.get("content-type"), /^text\/event-stream/);
  const text = await answer.text();
  assert.match(text, /^id: 0\nevent: status\ndata: \{"status":"queued"\}\n\n/);
  assert.match(text, /event: done\ndata: \{\}\n\n$/);
});

test("run() still answers the images", { timeout: TIMEOUT_MS }, async () => {
  const output = await client().run("mediagen/local", { input: { ...INPUT, num_outputs: 2 } });
  assert.ok(Array.isArray(output) && output.length === 2, `two outputs: ${output}`);
  for (const item of output) {
    // An https URL comes back as the client's FileOutput, a plain http one (the local stack) as
    // the URL itself; either names an image that downloads with no key.
    const url = typeof item === "string" ? item : item.url().href;
    assert.deepEqual(pngSize(await download(url)), [INPUT.width, INPUT.height]);
  }
});
