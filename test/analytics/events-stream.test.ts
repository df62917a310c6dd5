/**
 * GET /v1/events, the server-sent-events stream, over real HTTP: events as they happen,
 * filtered, heartbeats, and a clean end on client disconnect, server close and keygate close.
 */
import { request as httpRequest } from "node:http";
import type { ClientRequest, IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createMemoryStore } from "../../src/store/memory/index.js";

const ROOT = "kg_root_" + "s".repeat(40);

interface Fixture {
  keygate: Keygate;
  app: FastifyInstance;
  base: string;
  accountId: string;
  stop(): Promise<void>;
}

async function start(): Promise<Fixture> {
  const keygate = await createKeygate({
    config: {
      apis: [{ id: "pay", keyFormat: { prefix: "pk" } }],
      cache: { changePollMs: 0 },
      usage: { flushIntervalMs: 600_000 },
      analytics: { flushIntervalMs: 600_000, heartbeatSeconds: 1 },
    },
    store: createMemoryStore(),
  });
  const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const accountId = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  let stopped = false;
  return {
    keygate, app, accountId, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await app.close();
      await keygate.close();
    },
  };
}

interface SseMessage {
  event: string | null;
  data: string | null;
  comment: string | null;
  retry: string | null;
}

/** A client of one stream that parses messages as they arrive. */
interface Stream {
  res: IncomingMessage;
  req: ClientRequest;
  messages: SseMessage[];
  /** Everything received so far. */
  body(): string;
  /** Resolves with the first message (already received or still to come) that matches. */
  next(match: (m: SseMessage) => boolean, timeoutMs?: number): Promise<SseMessage>;
  ended: Promise<void>;
}

function open(base: string, query = "", auth = true): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/v1/events${query}`, { headers: auth ? { authorization: `Bearer ${ROOT}` } : {}, agent: false });
    req.on("error", reject);
    req.on("response", (res) => {
      const messages: SseMessage[] = [];
      const waiters: Array<() => void> = [];
      let buffer = "";
      let all = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        all += chunk;
        buffer += chunk;
        let at: number;
        while ((at = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          for (const line of block.split("\n")) {
            const m: SseMessage = { event: null, data: null, comment: null, retry: null };
            if (line.startsWith(":")) m.comment = line.slice(1).trim();
            else if (line.startsWith("retry:")) m.retry = line.slice(6).trim();
            else continue;
            messages.push(m);
          }
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? null;
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? null;
          if (event !== null || data !== null) messages.push({ event, data, comment: null, retry: null });
          for (const w of waiters.splice(0)) w();
        }
      });
      const ended = new Promise<void>((r) => { res.on("end", () => r()); res.on("close", () => r()); });
      const next = (match: (m: SseMessage) => boolean, timeoutMs = 3000): Promise<SseMessage> => new Promise((ok, fail) => {
        const timer = setTimeout(() => fail(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(messages)}`)), timeoutMs);
        const check = (): void => {
          const found = messages.find(match);
          if (found) { clearTimeout(timer); ok(found); } else waiters.push(check);
        };
        check();
      });
      resolve({ res, req, messages, next, ended, body: () => all });
    });
    req.end();
  });
}

const waitFor = async (what: string, condition: () => boolean, timeoutMs = 3000): Promise<void> => {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe("GET /v1/events", () => {
  test("matching verifications arrive as they happen; others are filtered out; heartbeats keep it alive", async () => {
    const f = await start();
    try {
      const mine = await f.keygate.keys.create({ api: "pay", accountId: f.accountId });
      const other = await f.keygate.keys.create({ api: "pay", accountId: f.accountId });
      const stream = await open(f.base, `?keyId=${mine.id}`);
      assert.equal(stream.res.statusCode, 200);
      assert.match(String(stream.res.headers["content-type"]), /^text\/event-stream/);
      assert.equal(stream.res.headers["cache-control"], "no-cache, no-transform");
      assert.match(String(stream.res.headers["x-request-id"]), /^req_/);
      await stream.next((m) => m.retry === "2000");
      await waitFor("the subscription", () => f.keygate.analytics.stats().subscribers === 1);

      await f.keygate.verifyKey({ api: "pay", key: other.key });
      await f.keygate.verifyKey({ api: "pay", key: mine.key, ip: "198.51.100.4" }, { requestId: "req_live_1", method: "GET", path: "/balance" });
      const got = await stream.next((m) => m.event === "usage");
      const event = JSON.parse(got.data!);
      assert.equal(event.keyId, mine.id);
      assert.equal(event.code, "VALID");
      assert.equal(event.requestId, "req_live_1");
      assert.equal(event.ip, "198.51.100.4");
      assert.equal(event.path, "/balance");
      assert.ok(!got.data!.includes(mine.key), "never the secret");
      await f.keygate.verifyKey({ api: "pay", key: mine.key, scopes: ["admin"] });
      await stream.next((m) => m.event === "usage" && JSON.parse(m.data!).code === "INSUFFICIENT_SCOPE");
      assert.equal(stream.messages.filter((m) => m.event === "usage").length, 2, "the other key's event was filtered out");

      await stream.next((m) => m.comment === "heartbeat", 2500);
      stream.req.destroy();
    } finally {
      await f.stop();
    }
  });

  test("a client that goes away is unsubscribed", async () => {
    const f = await start();
    try {
      const a = await open(f.base);
      const b = await open(f.base, "?api=pay");
      await waitFor("two subscriptions", () => f.keygate.analytics.stats().subscribers === 2);
      a.req.destroy();
      await waitFor("the first to go", () => f.keygate.analytics.stats().subscribers === 1);
      b.res.destroy();
      await waitFor("the second to go", () => f.keygate.analytics.stats().subscribers === 0);
    } finally {
      await f.stop();
    }
  });

  test("closing the server ends open streams at once instead of waiting for their clients", async () => {
    const f = await start();
    const stream = await open(f.base);
    await waitFor("the subscription", () => f.keygate.analytics.stats().subscribers === 1);
    const started = Date.now();
    await f.app.close();
    await stream.ended;
    assert.ok(Date.now() - started < 2000, `server closed in ${Date.now() - started} ms`);
    assert.equal(f.keygate.analytics.stats().subscribers, 0);
    await f.keygate.close();
  });

  test("closing keygate ends open streams too", async () => {
    const f = await start();
    try {
      const stream = await open(f.base);
      await waitFor("the subscription", () => f.keygate.analytics.stats().subscribers === 1);
      await f.keygate.close();
      await stream.ended;
      assert.equal(stream.res.complete, true, "ended by the server, not cut");
    } finally {
      await f.app.close();
    }
  });

  test("a bad filter or a missing root key is refused before any stream starts", async () => {
    const f = await start();
    try {
      for (const [query, auth, status, code] of [["?code=lower", true, 400, "INVALID_REQUEST"], ["?colour=red", true, 400, "INVALID_REQUEST"], ["", false, 401, "UNAUTHORIZED"]] as const) {
        const stream = await open(f.base, query, auth);
        assert.equal(stream.res.statusCode, status);
        assert.match(String(stream.res.headers["content-type"]), /application\/problem\+json/);
        await stream.ended;
        assert.equal(JSON.parse(stream.body()).code, code);
      }
      assert.equal(f.keygate.analytics.stats().subscribers, 0);
    } finally {
      await f.stop();
    }
  });
});
