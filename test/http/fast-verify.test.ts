/**
 * POST /v1/keys/verify over a real socket, where src/http/fast-verify.ts answers it ahead of
 * Fastify, against the same request through `app.inject` (Fastify's route, the reference):
 * every answer must be the same — status, the headers that matter and the body — whether the
 * fast path took the request, declined it or replayed it.
 */
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { KeygateError } from "../../src/lib/errors.js";
import { buildServer } from "../../src/http/server.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Store } from "../../src/store/types.js";

const ROOT = `kg_root_${randomBytes(24).toString("base64url")}`;
const PATH = "/v1/keys/verify";

interface Answer { status: number; headers: Record<string, string | undefined>; body: string }

let app: FastifyInstance;
let keygate: Keygate;
let port: number;
let key: string;
let failStore = false;
/** Requests that went through Fastify's hooks (the fast path runs none). */
let throughFastify = 0;

before(async () => {
  const memory = createMemoryStore();
  // A store whose key lookups can be made to fail as an unreachable database's do.
  const store = new Proxy(memory, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (prop === "getKeyByHash") {
        return async (...args: unknown[]) => {
          if (failStore) throw new KeygateError("STORE_UNAVAILABLE", "The memory store is unreachable (test); retry shortly.", 503);
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  }) as Store;
  keygate = await createKeygate({
    store,
    // No rate limit and no lockout: verifying twice (socket, then inject) gives the same verdict.
    config: { apis: [{ id: "pay", keyFormat: { prefix: "pk" }, scopes: ["read", "write"], lockout: { enabled: false } }], cache: { negativeTtlSeconds: 0 } },
  });
  app = await buildServer({ keygate, rootKeyHash: createHash("sha256").update(ROOT).digest("hex") });
  app.addHook("onRequest", (_request, _reply, done) => { throughFastify++; done(); });
  await app.listen({ port: 0, host: "127.0.0.1" });
  port = (app.server.address() as AddressInfo).port;
  const account = await keygate.accounts.create({ name: "Acme", email: "ops@acme.test" });
  key = (await keygate.keys.create({ api: "pay", accountId: account.id, scopes: ["read"] })).key;
});
after(async () => {
  await app.close();
  await keygate.close();
});

function overSocket(headers: Record<string, string>, body: string | Buffer, path = PATH, chunked = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method: "POST", path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    if (chunked) {
      req.write(body.slice(0, 5));
      req.end(body.slice(5));
    } else {
      req.end(body);
    }
  });
}

async function viaInject(headers: Record<string, string>, body: string | Buffer, path = PATH): Promise<Answer> {
  const r = await app.inject({ method: "POST", url: path, headers, payload: body });
  return { status: r.statusCode, headers: r.headers as Record<string, string>, body: r.body };
}

const auth = { authorization: `Bearer ${ROOT}`, "content-type": "application/json" };
let n = 0;

/** Sends one request both ways, with the same X-Request-Id, and checks the answers agree. */
async function same(headers: Record<string, string>, body: string | Buffer, path = PATH, chunked = false): Promise<Answer> {
  const id = `fast-verify-${++n}`;
  const h = { ...headers, "x-request-id": id };
  const socket = await overSocket(chunked ? h : { ...h, "content-length": String(Buffer.byteLength(body)) }, body, path, chunked);
  const reference = await viaInject(h, body, path);
  assert.equal(socket.status, reference.status, `status for ${String(body).slice(0, 60)}`);
  for (const name of ["content-type", "x-request-id", "www-authenticate", "retry-after"]) {
    assert.equal(socket.headers[name], reference.headers[name], `${name} for ${String(body).slice(0, 60)}`);
  }
  assert.equal(socket.body, reference.body);
  assert.equal(socket.headers["x-request-id"], id);
  return socket;
}

describe("POST /v1/keys/verify answered ahead of Fastify", () => {
  test("a valid key: the verdict as Fastify serialises it, without running Fastify's request hooks", async () => {
    const counted = throughFastify;
    const answer = await same(auth, JSON.stringify({ api: "pay", key, scopes: ["read"] }));
    assert.equal(answer.status, 200);
    const verdict = JSON.parse(answer.body) as { valid: boolean; code: string };
    assert.equal(verdict.valid, true);
    assert.equal(verdict.code, "VALID");
    // `same` sent it twice: over the socket (fast path, no hook) and through inject (hook).
    assert.equal(throughFastify - counted, 1, "the socket request ran Fastify's hooks");
    // The server keeps the keep-alive settings Fastify gives the servers it makes.
    assert.match(answer.headers["keep-alive"] ?? "", /timeout=72/);
  });

  test("denied keys are verdicts too: NOT_FOUND, MALFORMED_KEY, INSUFFICIENT_SCOPE, MISSING_CREDENTIALS", async () => {
    const forged = keygate.apis.get("pay")!.codec.generate("live");
    for (const [body, code] of [
      [{ api: "pay", key: forged }, "NOT_FOUND"],
      [{ api: "pay", key: "not-a-key" }, "MALFORMED_KEY"],
      [{ api: "pay", key, scopes: ["write"] }, "INSUFFICIENT_SCOPE"],
      [{ api: "pay", key: "" }, "MISSING_CREDENTIALS"],
    ] as const) {
      const answer = await same(auth, JSON.stringify(body));
      assert.equal(answer.status, 200);
      assert.equal((JSON.parse(answer.body) as { code: string }).code, code);
    }
  });

  test("bad input is Fastify's answer, replayed: unknown API, bad IP, bad JSON, unknown field, missing field, prototype keys", async () => {
    const cases: Array<[string, number, string]> = [
      [JSON.stringify({ api: "nope", key }), 400, "UNKNOWN_API"],
      [JSON.stringify({ api: "pay", key, ip: "999.1.1.1" }), 400, "INVALID_IP"],
      ['{"api":"pay","key":', 400, "MALFORMED_JSON"],
      [JSON.stringify({ api: "pay", key, extra: 1 }), 400, "INVALID_REQUEST"],
      [JSON.stringify({ key }), 400, "INVALID_REQUEST"],
      ["null", 400, "INVALID_REQUEST"],
      ['{"api":"pay","key":"x","__proto__":{"admin":true}}', 400, ""],
      ['{"api":"p\\u0061y","key":"x"}', 200, ""],
    ];
    for (const [body, status, code] of cases) {
      const answer = await same(auth, body);
      assert.equal(answer.status, status, body);
      if (code) assert.equal((JSON.parse(answer.body) as { code: string }).code, code, body);
    }
  });

  test("requests it declines reach Fastify unchanged: no or a wrong root key, another type, a query string, a chunked body", async () => {
    const body = JSON.stringify({ api: "pay", key });
    assert.equal((await same({ "content-type": "application/json" }, body)).status, 401);
    assert.equal((await same({ ...auth, authorization: "Bearer wrong-root-key-0123456789" }, body)).status, 401);
    assert.equal((await same({ ...auth, "content-type": "text/plain" }, body)).status, 400); // a string, not an object
    assert.equal((await same({ ...auth, "content-type": "application/json; charset=utf-8" }, body)).status, 200);
    assert.equal((await same(auth, body, `${PATH}?trace=1`)).status, 200);
    assert.equal((await same(auth, body, PATH, true)).status, 200);
  });

  test("an unreachable store is a 503 with Retry-After, answered once (not replayed)", async () => {
    const other = keygate.apis.get("pay")!.codec.generate("live"); // not cached: needs the store
    failStore = true;
    try {
      const answer = await same(auth, JSON.stringify({ api: "pay", key: other }));
      assert.equal(answer.status, 503);
      assert.equal(answer.headers["retry-after"], "1");
      assert.equal((JSON.parse(answer.body) as { code: string }).code, "STORE_UNAVAILABLE");
    } finally {
      failStore = false;
    }
  });
});

describe("the fast verify handler on its own", () => {
  test("a verdict that cannot be serialised is a 500 problem document, not an uncaught exception", async () => {
    const { createServer } = await import("node:http");
    const { createFastVerify } = await import("../../src/http/fast-verify.js");
    const stub = { verifyKeyNow: () => ({ code: "VALID" }) } as unknown as Keygate; // no `valid`, no `api`
    const handle = createFastVerify({ app, keygate: stub, isRootKey: (t) => t === ROOT, closing: () => false });
    const server = createServer((req, res) => { if (!handle(req, res)) { res.writeHead(599); res.end(); } });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const body = JSON.stringify({ api: "pay", key: "pk_live_x" });
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`, {
        method: "POST", headers: { ...auth, "x-request-id": "broken-1" }, body,
      });
      assert.equal(res.status, 500);
      const problem = await res.json() as { code: string; requestId: string };
      assert.equal(problem.code, "INTERNAL_ERROR");
      assert.equal(problem.requestId, "broken-1");
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
