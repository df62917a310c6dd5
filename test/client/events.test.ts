/**
 * `events.stream`, the client of GET /v1/events: against a real keygate service over HTTP —
 * events as they happen and filtered, the end of the loop closing the connection, errors, and a
 * service restart survived — and against a scripted text/event-stream server for what keygate
 * does not do today (event ids, a custom retry time) and for failures it cannot be made to show.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { createKeygateClient, KeygateApiError, KeygateNetworkError } from "../../src/client/index.js";
import type { KeygateClient, StreamEvent } from "../../src/client/index.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { CONFIG, ROOT_KEY } from "./support.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what: string, probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const started = Date.now();
  while (!probe()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The next item of the stream, or a failure after `timeoutMs`. */
async function nextItem(it: AsyncIterator<StreamEvent>, timeoutMs = 5000): Promise<StreamEvent> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([it.next(), new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no item within ${timeoutMs} ms`)), timeoutMs); })]);
    assert.equal(result.done, false, "the stream ended");
    return result.value as StreamEvent;
  } finally {
    clearTimeout(timer);
  }
}

describe("against a keygate service", () => {
  let keygate: Keygate;
  let app: FastifyInstance;
  let port = 0;
  let kg: KeygateClient;
  let accountId: string;
  const subscribers = (): number => keygate.analytics.stats().subscribers;

  /** (Re)starts the HTTP server on the same port, over the same keygate. */
  const listen = async (): Promise<void> => {
    app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
    await app.listen({ port, host: "127.0.0.1" });
    port = (app.server.address() as AddressInfo).port;
  };

  before(async () => {
    keygate = await createKeygate({ config: CONFIG });
    await listen();
    kg = createKeygateClient({ baseUrl: `http://127.0.0.1:${port}`, rootKey: ROOT_KEY });
    accountId = (await kg.accounts.create({ name: "Live", email: "live@client.test" })).id;
  });
  after(async () => {
    await app?.close();
    await keygate?.close();
  });

  test("yields each verification the filter names as it happens, as the log will record it", async () => {
    const watched = await kg.keys.create({ api: "pay", accountId, scopes: ["charges.read"] });
    const other = await kg.keys.create({ api: "pay", accountId });
    const stop = new AbortController();
    const it = kg.events.stream({ keyId: watched.id }, { signal: stop.signal })[Symbol.asyncIterator]();
    const first = nextItem(it); // connects
    await waitFor("the stream to subscribe", () => subscribers() === 1);

    await kg.keys.verify({ api: "pay", key: other.key });
    await kg.keys.verify({ api: "pay", key: watched.key, ip: "203.0.113.9", scopes: ["charges.read"] });
    await kg.keys.verify({ api: "pay", key: watched.key, scopes: ["charges.write"] });
    const items = [await first, await nextItem(it)];
    stop.abort();
    assert.deepEqual(items.map((i) => i.type === "usage" && [i.data.keyId, i.data.code, i.data.status]), [
      [watched.id, "VALID", 200],
      [watched.id, "INSUFFICIENT_SCOPE", 403],
    ]);

    await keygate.flush();
    const logs = (await kg.logs.list({ keyId: watched.id })).data.reverse();
    assert.deepEqual(items.map((i) => i.type === "usage" && i.data), logs.map(({ id: _id, ...event }) => event));
    assert.equal((await it.next()).done, true, "aborted: the loop ends without an error");
    await waitFor("the service to see the connection closed", () => subscribers() === 0);
  });

  test("leaving the loop closes the connection", async () => {
    const { key } = await kg.keys.create({ api: "pay", accountId });
    const seen: string[] = [];
    const loop = (async () => {
      for await (const item of kg.events.stream({ api: "pay", code: "VALID" })) {
        if (item.type === "usage") seen.push(item.data.code);
        break;
      }
    })();
    await waitFor("the stream to subscribe", () => subscribers() === 1);
    await kg.keys.verify({ api: "pay", key });
    await loop;
    assert.deepEqual(seen, ["VALID"]);
    await waitFor("the service to see the connection closed", () => subscribers() === 0);
  });

  test("a wrong root key is thrown as 401 UNAUTHORIZED at once; a bad filter as 400 INVALID_REQUEST", async () => {
    let calls = 0;
    const wrong = createKeygateClient({ baseUrl: `http://127.0.0.1:${port}`, rootKey: "not-the-root-key", fetch: (input, init) => { calls++; return fetch(input, init); } });
    await assert.rejects(wrong.events.stream().next(), (e) => e instanceof KeygateApiError && e.status === 401 && e.code === "UNAUTHORIZED");
    assert.equal(calls, 1, "a 4xx is final: no reconnection");
    await assert.rejects(kg.events.stream({ code: "not a code" }).next(), (e) => e instanceof KeygateApiError && e.status === 400 && e.code === "INVALID_REQUEST");
  });

  test("survives a service restart: the stream yields reconnected, then the events after it", async () => {
    const { key } = await kg.keys.create({ api: "pay", accountId });
    const stop = new AbortController();
    const it = kg.events.stream({ api: "pay" }, { signal: stop.signal })[Symbol.asyncIterator]();
    const first = nextItem(it);
    await waitFor("the stream to subscribe", () => subscribers() === 1);
    await kg.keys.verify({ api: "pay", key });
    assert.equal((await first).type, "usage");

    await app.close(); // ends every open stream
    const reconnected = nextItem(it, 10_000);
    await sleep(300);
    await listen(); // keygate's stream says retry: 2000, so the client comes back within 1–2 s
    assert.deepEqual(await reconnected, { type: "reconnected", attempts: 1 });
    await waitFor("the stream to subscribe again", () => subscribers() === 1);
    await kg.keys.verify({ api: "pay", key, ip: "198.51.100.4" });
    const after = await nextItem(it);
    assert.equal(after.type === "usage" && after.data.ip, "198.51.100.4");
    stop.abort();
  });
});

/** A text/event-stream server scripted per connection; it records each request's headers. */
async function scriptedServer(script: (res: ServerResponse, n: number) => void): Promise<{ url: string; requests: IncomingHttpHeaders[]; close(): Promise<void> }> {
  const requests: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    requests.push(req.headers);
    script(res, requests.length);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const SSE = { "content-type": "text/event-stream; charset=utf-8" };
const usage = (code: string): string => `event: usage\ndata: ${JSON.stringify({ api: "pay", code })}\n\n`;

describe("against a scripted event stream", () => {
  test("reconnects after the service's retry time, sending Last-Event-ID when the service sent ids", async () => {
    const server = await scriptedServer((res, n) => {
      res.writeHead(200, SSE);
      res.end(n === 1 ? `retry: 20\nid: 41\n${usage("VALID")}id: 42\n: no data, but the id counts\n\n` : usage("REVOKED"));
    });
    try {
      const kg = createKeygateClient({ baseUrl: server.url, rootKey: "root" });
      const items: StreamEvent[] = [];
      for await (const item of kg.events.stream({ api: "pay" }, { requestId: "req_stream_1" })) {
        items.push(item);
        if (items.length === 3) break;
      }
      assert.deepEqual(items.map((i) => i.type === "usage" ? i.data.code : i.type), ["VALID", "reconnected", "REVOKED"]);
      assert.equal(server.requests[0]!["last-event-id"], undefined);
      assert.equal(server.requests[1]!["last-event-id"], "42");
      assert.equal(server.requests[1]!.authorization, "Bearer root");
      assert.equal(server.requests[1]!.accept, "text/event-stream");
      assert.equal(server.requests[1]!["x-request-id"], "req_stream_1");
    } finally {
      await server.close();
    }
  });

  test("a connection silent for idleTimeoutMs is taken as dead: reopened, or thrown as TIMEOUT without reconnect", async () => {
    const server = await scriptedServer((res, n) => {
      res.writeHead(200, SSE);
      res.write("retry: 10\n\n");
      if (n > 1) res.write(usage("VALID"));
      // …and then nothing, the connection left open.
    });
    try {
      const kg = createKeygateClient({ baseUrl: server.url, rootKey: "root" });
      const it = kg.events.stream({}, { idleTimeoutMs: 150 })[Symbol.asyncIterator]();
      assert.deepEqual(await nextItem(it), { type: "reconnected", attempts: 1 });
      assert.equal((await nextItem(it)).type, "usage");
      await it.return?.();

      const once = kg.events.stream({}, { idleTimeoutMs: 150, reconnect: false });
      assert.equal((await once.next()).value?.type, "usage");
      await assert.rejects(once.next(), (e) => e instanceof KeygateNetworkError && e.code === "TIMEOUT");
      assert.equal(server.requests.length, 3);
    } finally {
      await server.close();
    }
  });

  test("gives up after maxAttempts failed attempts in a row with the last error; a dropped count is passed on", async () => {
    const server = await scriptedServer((res, n) => {
      if (n === 1) {
        res.writeHead(200, SSE);
        res.end(`event: dropped\ndata: {"count":3}\n\nevent: future-kind\ndata: {}\n\n`);
        return;
      }
      res.writeHead(503, { "content-type": "application/problem+json" });
      res.end(JSON.stringify({ code: "STORE_UNAVAILABLE", detail: "down" }));
    });
    try {
      const kg = createKeygateClient({ baseUrl: server.url, rootKey: "root" });
      const items: StreamEvent[] = [];
      await assert.rejects(async () => {
        for await (const item of kg.events.stream({}, { reconnectDelayMs: 10, maxAttempts: 3 })) items.push(item);
      }, (e) => e instanceof KeygateApiError && e.status === 503 && e.code === "STORE_UNAVAILABLE");
      assert.deepEqual(items, [{ type: "dropped", count: 3 }], "an unknown event kind is skipped");
      assert.equal(server.requests.length, 4, "one stream, then three failed attempts");
    } finally {
      await server.close();
    }
  });

  test("an unreachable service is thrown as NETWORK_ERROR after maxAttempts; aborting while waiting ends the loop quietly", async () => {
    const server = await scriptedServer(() => {});
    const url = server.url;
    await server.close();
    const kg = createKeygateClient({ baseUrl: url, rootKey: "root" });
    await assert.rejects(kg.events.stream({}, { reconnectDelayMs: 10, maxAttempts: 2 }).next(), (e) => e instanceof KeygateNetworkError && e.code === "NETWORK_ERROR");

    const stop = new AbortController();
    const pending = kg.events.stream({}, { reconnectDelayMs: 60_000, signal: stop.signal }).next();
    await sleep(50);
    stop.abort();
    assert.deepEqual(await pending, { done: true, value: undefined });
  });
});
