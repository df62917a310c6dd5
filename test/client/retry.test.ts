/**
 * The SDK's transport against a scripted fake service on 127.0.0.1: which calls are retried
 * on 5xx, network errors and timeouts, how long it waits (backoff, Retry-After), when it
 * gives up, how the caller's AbortSignal ends it, and what it sends.
 */
import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createKeygateClient, KeygateApiError, KeygateNetworkError, OPERATIONS } from "../../src/client/index.js";
import type { KeygateClientOptions } from "../../src/client/index.js";

type Step = (req: IncomingMessage, res: ServerResponse) => void;

interface Hit {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  at: number;
}

const ACCOUNT = { id: "acc_1", name: "Acme", email: "dev@acme.test", metadata: {}, ipAllowlists: {}, createdAt: "2026-01-01T00:00:00.000Z", updatedAt: "2026-01-01T00:00:00.000Z" };
const VERDICT = { valid: true, code: "VALID", api: "pay", keyId: "key_1" };

const json = (status: number, body: unknown, headers: Record<string, string> = {}): Step => (_req, res) => {
  res.writeHead(status, { "content-type": status >= 400 ? "application/problem+json" : "application/json", ...headers });
  res.end(JSON.stringify(body));
};
const problem = (status: number, code: string, headers: Record<string, string> = {}): Step =>
  json(status, { type: "about:blank", title: "Error", status, detail: `${code} happened`, code, requestId: "req_fake" }, headers);
/** Accepts the request and never answers. */
const hang: Step = () => {};
/** Sends the headers, then stalls before the body. */
const stallBody: Step = (_req, res) => { res.writeHead(200, { "content-type": "application/json" }); res.write("{"); };
/** Drops the connection without an answer. */
const drop: Step = (req) => { req.socket.destroy(); };

let script: Step[] = [];
let hits: Hit[] = [];
/** One fake server per test, so that no late request of one test is counted by the next. */
let servers: Server[] = [];

async function fakeService(): Promise<string> {
  const server = createServer((req, res) => {
    res.shouldKeepAlive = false;
    let body = "";
    req.on("data", (c: Buffer) => { body += c.toString(); });
    req.on("end", () => {
      hits.push({ method: req.method!, url: req.url!, headers: req.headers, body, at: performance.now() });
      const step = script[Math.min(hits.length - 1, script.length - 1)]!;
      step(req, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  const closing = servers.map((s) => new Promise<void>((resolve) => { s.closeAllConnections(); s.close(() => resolve()); }));
  servers = [];
  await Promise.all(closing);
});

/** A client of a fresh fake service that answers with `steps` in turn (the last repeats). */
async function scripted(steps: Step[], options: Partial<KeygateClientOptions> & { prefix?: string } = {}) {
  script = steps;
  hits = [];
  const base = await fakeService();
  const { prefix = "", ...rest } = options;
  return createKeygateClient({ baseUrl: `${base}${prefix}`, rootKey: "fake-root-key", retries: 2, retryDelayMs: 5, maxRetryDelayMs: 50, timeoutMs: 300, ...rest });
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail("expected the call to fail");
}

describe("what is retried", () => {
  test("a GET answered 503 is sent again until it succeeds", async () => {
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE"), problem(503, "STORE_UNAVAILABLE"), json(200, ACCOUNT)]);
    assert.deepEqual(await kg.accounts.get("acc_1"), ACCOUNT);
    assert.equal(hits.length, 3);
  });

  test("a GET that keeps failing gives up after retries + 1 attempts with the last error", async () => {
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE")]);
    const e = await caught(kg.keys.get("key_1"));
    assert.ok(e instanceof KeygateApiError);
    assert.equal(e.status, 503);
    assert.equal(e.code, "STORE_UNAVAILABLE");
    assert.equal(e.requestId, "req_fake");
    assert.equal(hits.length, 3);
  });

  test("POST /v1/keys/verify is retried (it changes no state), and so is revoke (idempotent)", async () => {
    const kg = await scripted([problem(502, "HTTP_502"), json(200, VERDICT)]);
    assert.deepEqual(await kg.keys.verify({ api: "pay", key: "pk_live_x" }), VERDICT);
    assert.equal(hits.length, 2);
    const again = await scripted([drop, json(200, { id: "key_1" })]);
    await again.keys.revoke("key_1");
    assert.equal(hits.length, 2);
  });

  test("calls that create or rotate are sent once, whatever happens", async () => {
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE")]);
    const e = await caught(kg.keys.create({ api: "pay", accountId: "acc_1" }));
    assert.ok(e instanceof KeygateApiError && e.status === 503);
    assert.equal(hits.length, 1);

    const dropped = await scripted([drop]);
    assert.ok((await caught(dropped.keys.rotate("key_1", { gracePeriodSeconds: 60 }))) instanceof KeygateNetworkError);
    assert.equal(hits.length, 1);

    const hung = await scripted([hang]);
    const t = await caught(hung.accounts.create({ name: "A", email: "a@b.test" }));
    assert.ok(t instanceof KeygateNetworkError && t.code === "TIMEOUT" && t.attempts === 1);
    assert.equal(hits.length, 1);
  });

  test("4xx answers and 501 are final: no retry", async () => {
    const kg = await scripted([problem(404, "KEY_NOT_FOUND")]);
    assert.equal(((await caught(kg.keys.get("key_1"))) as KeygateApiError).code, "KEY_NOT_FOUND");
    assert.equal(hits.length, 1);
    const kg501 = await scripted([problem(501, "NOT_IMPLEMENTED")]);
    await caught(kg501.apis.list());
    assert.equal(hits.length, 1);
  });

  test("a 5xx that is not keygate's problem document still carries its status as HTTP_<status>", async () => {
    const kg = await scripted([(_req, res) => { res.writeHead(502, { "content-type": "text/html" }); res.end("<h1>Bad Gateway</h1>"); }]);
    const e = await caught(kg.apis.list());
    assert.ok(e instanceof KeygateApiError);
    assert.equal(e.code, "HTTP_502");
    assert.equal(e.status, 502);
    assert.equal(hits.length, 3);
  });

  test("every GET in the operation table is retryable; creating and rotating never are", () => {
    for (const [op, policy] of Object.entries(OPERATIONS)) {
      if (op.startsWith("GET ")) assert.equal(policy.retry, true, op);
    }
    for (const op of ["POST /v1/keys", "POST /v1/accounts", "POST /v1/applications", "POST /v1/keys/{id}/rotate", "POST /v1/keys/import", "POST /v1/signing-keys/rotate"] as const) {
      assert.equal(OPERATIONS[op].retry, false, op);
    }
  });
});

describe("network errors and timeouts", () => {
  test("a dropped connection is retried, then reported as NETWORK_ERROR with the cause", async () => {
    const kg = await scripted([drop]);
    const e = await caught(kg.apis.list());
    assert.ok(e instanceof KeygateNetworkError);
    assert.equal(e.code, "NETWORK_ERROR");
    assert.equal(e.attempts, 3);
    assert.ok(e.cause);
    assert.equal(hits.length, 3);
  });

  test("a refused connection is a NETWORK_ERROR", async () => {
    const kg = createKeygateClient({ baseUrl: "http://127.0.0.1:9", rootKey: "k", retries: 1, retryDelayMs: 1 });
    const e = await caught(kg.apis.list());
    assert.ok(e instanceof KeygateNetworkError && e.code === "NETWORK_ERROR" && e.attempts === 2);
  });

  test("no answer within timeoutMs is a TIMEOUT, per attempt", async () => {
    const kg = await scripted([hang], { timeoutMs: 250, retries: 1 });
    const started = performance.now();
    const e = await caught(kg.keys.get("key_1"));
    assert.ok(e instanceof KeygateNetworkError);
    assert.equal(e.code, "TIMEOUT");
    assert.equal(e.attempts, 2);
    assert.equal(hits.length, 2);
    assert.ok(performance.now() - started >= 500, "two attempts of 250 ms each");
  });

  test("the timeout covers the body: headers followed by silence is a TIMEOUT", async () => {
    const kg = await scripted([stallBody], { timeoutMs: 250, retries: 0 });
    const e = await caught(kg.keys.get("key_1"));
    assert.ok(e instanceof KeygateNetworkError && e.code === "TIMEOUT");
  });

  test("a per-call timeoutMs overrides the client's", async () => {
    const kg = await scripted([hang, json(200, ACCOUNT)], { timeoutMs: 60_000, retries: 1 });
    const started = performance.now();
    assert.deepEqual(await kg.accounts.get("acc_1", { timeoutMs: 300 }), ACCOUNT);
    assert.equal(hits.length, 2);
    assert.ok(performance.now() - started < 10_000);
  });
});

describe("waiting between attempts", () => {
  test("backoff doubles per attempt up to maxRetryDelayMs (jitter at its top)", async (t) => {
    t.mock.method(Math, "random", () => 0.999_999);
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE")], { retries: 3, retryDelayMs: 40, maxRetryDelayMs: 100 });
    await caught(kg.apis.list());
    assert.equal(hits.length, 4);
    const gaps = hits.slice(1).map((h, i) => h.at - hits[i]!.at);
    // Lower bounds only: a loaded machine may be late, never early.
    assert.ok(gaps[0]! >= 39, `first wait ≈ 40 ms, was ${gaps[0]}`);
    assert.ok(gaps[1]! >= 79, `second wait ≈ 80 ms, was ${gaps[1]}`);
    assert.ok(gaps[2]! >= 99, `third wait capped at 100 ms, was ${gaps[2]}`);
  });

  test("Retry-After is honoured when the service asks for a pause", async () => {
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE", { "retry-after": "1" }), json(200, ACCOUNT)], { maxRetryDelayMs: 2000 });
    await kg.accounts.get("acc_1");
    assert.equal(hits.length, 2);
    assert.ok(hits[1]!.at - hits[0]!.at >= 990, "waited the second it was asked to");
  });

  test("a Retry-After longer than maxRetryDelayMs ends the call at once", async () => {
    const kg = await scripted([problem(503, "STORE_UNAVAILABLE", { "retry-after": "30" })], { maxRetryDelayMs: 100 });
    const started = performance.now();
    const e = await caught(kg.accounts.get("acc_1"));
    assert.ok(e instanceof KeygateApiError && e.status === 503);
    assert.equal(hits.length, 1);
    assert.ok(performance.now() - started < 1000);
  });
});

describe("the caller's AbortSignal", () => {
  test("aborting while the request is in flight rejects with the abort reason, without retrying", async () => {
    const controller = new AbortController();
    const kg = await scripted([() => controller.abort(new Error("user went away"))], { timeoutMs: 5000 });
    const e = await caught(kg.apis.list({ signal: controller.signal }));
    assert.equal((e as Error).message, "user went away");
    assert.ok(!(e instanceof KeygateNetworkError));
    assert.equal(hits.length, 1);
  });

  test("aborting during the wait between attempts ends it there", async () => {
    const controller = new AbortController();
    const unavailable = problem(503, "STORE_UNAVAILABLE", { "retry-after": "1" });
    const kg = await scripted([(req, res) => { unavailable(req, res); setTimeout(() => controller.abort(), 100); }], { maxRetryDelayMs: 2000 });
    const started = performance.now();
    const e = await caught(kg.apis.list({ signal: controller.signal }));
    assert.equal((e as Error).name, "AbortError");
    assert.ok(performance.now() - started < 900);
    assert.equal(hits.length, 1);
  });

  test("an already aborted signal sends nothing", async () => {
    const kg = await scripted([json(200, { data: [] })]);
    await caught(kg.apis.list({ signal: AbortSignal.abort() }));
    assert.equal(hits.length, 0);
  });
});

describe("what is sent", () => {
  test("the root key, JSON headers, a body only when there is one, and X-Request-Id when asked", async () => {
    const kg = await scripted([json(200, VERDICT)], { headers: { "x-tenant": "t1" } });
    await kg.keys.verify({ api: "pay", key: "pk_live_x", scopes: ["a"] }, { requestId: "req_sent_1" });
    const [verify] = hits;
    assert.equal(verify!.method, "POST");
    assert.equal(verify!.url, "/v1/keys/verify");
    assert.equal(verify!.headers.authorization, "Bearer fake-root-key");
    assert.equal(verify!.headers.accept, "application/json");
    assert.equal(verify!.headers["content-type"], "application/json");
    assert.equal(verify!.headers["x-request-id"], "req_sent_1");
    assert.equal(verify!.headers["x-tenant"], "t1");
    assert.deepEqual(JSON.parse(verify!.body), { api: "pay", key: "pk_live_x", scopes: ["a"] });

    const revoke = await scripted([json(200, { id: "key_a/b" })]);
    await revoke.keys.revoke("key_a/b");
    assert.equal(hits[0]!.url, "/v1/keys/key_a%2Fb/revoke");
    assert.equal(hits[0]!.body, "");
    assert.equal(hits[0]!.headers["content-type"], undefined);
  });

  test("list queries carry their filters and a numeric limit as text; undefined fields are left out", async () => {
    const kg = await scripted([json(200, { data: [], nextCursor: null })]);
    await kg.keys.list({ api: "pay", accountId: undefined, limit: 25 });
    assert.equal(hits[0]!.url, "/v1/keys?api=pay&limit=25");
  });

  test("a base URL with a path prefix keeps it", async () => {
    const kg = await scripted([json(200, { data: [] })], { prefix: "/keygate/" });
    await kg.apis.list();
    assert.equal(hits[0]!.url, "/keygate/v1/apis");
  });

  test("a success answer that is not JSON is an INVALID_RESPONSE error", async () => {
    const kg = await scripted([(_req, res) => { res.writeHead(200, { "content-type": "text/plain" }); res.end("ok"); }]);
    const e = await caught(kg.apis.list());
    assert.ok(e instanceof KeygateApiError && e.code === "INVALID_RESPONSE");
  });
});
