/**
 * POST /v1/keys/verify over a real socket, where src/http/fast-verify.ts answers it ahead of
 * Fastify, against the same request through `app.inject` (Fastify's route, the reference):
 * every answer must be the same — status, the headers that matter and the body — whether the
 * fast path took the request, declined it or replayed it.
 */
import { createHash, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { connect } from "node:net";
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

/** Sends raw HTTP/1.1 bytes on one connection and reads `count` responses off it, in order. */
function rawExchange(bytes: string, count: number): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let data = Buffer.alloc(0);
    const answers: Answer[] = [];
    socket.on("error", reject);
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        const end = data.indexOf("\r\n\r\n");
        if (end < 0) break;
        const [statusLine, ...lines] = data.subarray(0, end).toString("latin1").split("\r\n");
        const headers: Record<string, string> = {};
        for (const line of lines) headers[line.slice(0, line.indexOf(":")).toLowerCase()] = line.slice(line.indexOf(":") + 1).trim();
        const length = Number(headers["content-length"]);
        if (data.length < end + 4 + length) break;
        answers.push({ status: Number(statusLine!.split(" ")[1]), headers, body: data.subarray(end + 4, end + 4 + length).toString() });
        data = data.subarray(end + 4 + length);
      }
      if (answers.length === count) {
        socket.destroy();
        resolve(answers);
      }
    });
    socket.write(bytes);
  });
}

const rawVerify = (body: object, id: string): string => {
  const json = JSON.stringify(body);
  return `POST ${PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${ROOT}\r\nContent-Type: application/json\r\n` +
    `X-Request-Id: ${id}\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`;
};

describe("verdicts answered together (one batch per turn of the event loop)", () => {
  test("requests arriving together on many connections each get their own verdict", async () => {
    const account = await keygate.accounts.create({ name: "Batch", email: "batch@acme.test" });
    const keys = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      keygate.keys.create({ api: "pay", accountId: account.id, scopes: i % 3 === 0 ? ["read", "write"] : ["read"] })));
    for (let round = 0; round < 4; round++) {
      const sent = Array.from({ length: 60 }, (_, i) => ({ i, k: keys[(i * 7 + round) % keys.length]!, scopes: i % 2 === 0 ? ["read"] : ["write"] }));
      const answers = await Promise.all(sent.map(({ i, k, scopes }) => {
        const body = JSON.stringify({ api: "pay", key: k.key, scopes });
        return overSocket({ ...auth, "x-request-id": `batch-${round}-${i}`, "content-length": String(Buffer.byteLength(body)) }, body);
      }));
      for (const [j, { i, k, scopes }] of sent.entries()) {
        const answer = answers[j]!;
        assert.equal(answer.status, 200);
        assert.equal(answer.headers["x-request-id"], `batch-${round}-${i}`);
        const verdict = JSON.parse(answer.body) as { keyId: string; code: string };
        assert.equal(verdict.keyId, k.id, `request ${i} of round ${round} got another request's verdict`);
        assert.equal(verdict.code, scopes[0] === "write" && !k.scopes.includes("write") ? "INSUFFICIENT_SCOPE" : "VALID");
      }
    }
  });

  test("pipelined requests on one connection are answered in order, the fast path's and Fastify's alike", async () => {
    const forged = keygate.apis.get("pay")!.codec.generate("live");
    const bodies: Array<[object, number, string | null]> = [
      [{ api: "pay", key, scopes: ["read"] }, 200, "VALID"],
      [{ api: "pay", key: forged }, 200, "NOT_FOUND"],
      [{ api: "nope", key }, 400, null], // replayed through Fastify, between two fast answers
      [{ api: "pay", key, scopes: ["write"] }, 200, "INSUFFICIENT_SCOPE"],
      [{ api: "pay", key }, 200, "VALID"],
    ];
    const answers = await rawExchange(bodies.map(([body], i) => rawVerify(body, `pipelined-${i}`)).join(""), bodies.length);
    for (const [i, [, status, code]] of bodies.entries()) {
      assert.equal(answers[i]!.headers["x-request-id"], `pipelined-${i}`);
      assert.equal(answers[i]!.status, status);
      if (code !== null) assert.equal((JSON.parse(answers[i]!.body) as { code: string }).code, code);
    }
  });

  test("a client gone before its answer does not hold up the others of its batch", async () => {
    for (let i = 0; i < 20; i++) {
      const gone = connect(port, "127.0.0.1");
      gone.on("error", () => {});
      gone.write(rawVerify({ api: "pay", key }, `gone-${i}`));
      gone.destroy();
      const [answer] = await rawExchange(rawVerify({ api: "pay", key }, `stays-${i}`), 1);
      assert.equal(answer!.status, 200);
      assert.equal((JSON.parse(answer!.body) as { valid: boolean }).valid, true);
    }
  });
});

describe("the fast verify handler on its own", () => {
  // Left waiting, that client would wait for ever (no request timeout here): the test's timeout fails it.
  test("a reply that throws cuts that client's connection; the others of its batch are answered", { timeout: 30_000 }, async () => {
    const { createServer } = await import("node:http");
    const { createFastVerify } = await import("../../src/http/fast-verify.js");
    const handle = createFastVerify({ app, keygate, isRootKey: (t) => t === ROOT, closing: () => false });
    const server = createServer((req, res) => {
      if (!handle(req, res)) { res.writeHead(599); res.end(); return; }
      // Headers sent behind the handler's back: its writeHead then throws.
      if (req.headers["x-request-id"] === "cut-me") req.on("end", () => res.flushHeaders());
    });
    server.requestTimeout = 0;
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`;
    try {
      const body = JSON.stringify({ api: "pay", key });
      const results = await Promise.allSettled(["ok-1", "cut-me", "ok-2"].map(async (id) => {
        const res = await fetch(url, { method: "POST", headers: { ...auth, "x-request-id": id }, body });
        return { id, status: res.status, verdict: await res.json() as { valid: boolean } };
      }));
      assert.equal(results[1]!.status, "rejected", "the client whose reply failed is cut off, not left waiting");
      for (const r of [results[0]!, results[2]!]) {
        assert.equal(r.status, "fulfilled");
        assert.equal(r.value.status, 200);
        assert.equal(r.value.verdict.valid, true);
      }
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

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
