/**
 * keygate/fastify with a real Fastify app over real HTTP: the shared conformance suite in
 * both modes, then what is Fastify's own: the plugin covers the scope that registers it and
 * no other, `request.keygate` is decorated, errors reach the error handler, `trustProxy`
 * decides the client address.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import Fastify from "fastify";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { keygateAuth, requireScopes } from "../../src/middleware/fastify/index.js";
import { createKeygateClient, KeygateNetworkError } from "../../src/client/index.js";
import { describeMiddleware } from "./conformance.js";
import type { AppGates } from "./conformance.js";
import { bearer, createFixture, ROOT_KEY, send } from "./support.js";
import type { Fixture } from "./support.js";

const me = async (request: FastifyRequest) => {
  // Typed by the module augmentation: no cast needed.
  const keyId: string | undefined = request.keygate?.keyId;
  assert.equal(typeof keyId, "string");
  return { verdict: request.keygate };
};

async function serve(app: FastifyInstance): Promise<{ url: string; close(): Promise<void> }> {
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  assert.ok(address && typeof address === "object");
  return { url: `http://127.0.0.1:${address.port}`, close: () => app.close() };
}

function buildApp(gates: AppGates, trustProxy: string | false = "127.0.0.1"): FastifyInstance {
  const app = Fastify({ trustProxy, requestIdHeader: "x-request-id" });
  app.register(async (pay) => {
    await pay.register(keygateAuth, gates.pay);
    pay.get("/me", me);
    pay.get("/wallets", { preHandler: requireScopes("wallets.read") }, async () => ({ ok: "wallets" }));
    pay.post("/wallets/debit", { preHandler: requireScopes("wallets.read", "wallets.write") }, async () => ({ ok: "debit" }));
    pay.get("/raw", (_request, reply) => {
      reply.hijack();
      // Past Fastify's serializer, on the raw response: what reply.headers() set is on reply, not raw.
      reply.raw.writeHead(200, { "content-type": "text/plain", ...(reply.getHeaders() as Record<string, string>) });
      reply.raw.end("raw");
    });
  }, { prefix: "/pay" });
  app.register(async (topup) => {
    await topup.register(keygateAuth, gates.topup);
    topup.get("/balance", me);
  }, { prefix: "/topup" });
  app.register(async (email) => {
    await email.register(keygateAuth, gates.email);
    email.get("/me", me);
  }, { prefix: "/email" });
  if (gates.pesa) {
    const pesa = gates.pesa;
    app.register(async (scope) => {
      await scope.register(keygateAuth, pesa);
      scope.get("/me", me);
    }, { prefix: "/pesa" });
  }
  return app;
}

describeMiddleware({ name: "Fastify", start: async (gates) => serve(buildApp(gates)) });

describe("Fastify specifics", () => {
  let fx: Fixture;
  before(async () => { fx = await createFixture("in-process"); });
  after(async () => { await fx?.close(); });

  test("the plugin guards the scope that registers it, not its parent or siblings; request.keygate is absent there", async () => {
    const app = Fastify();
    app.get("/health", async (request) => ({ ok: true, keygate: request.keygate === undefined ? "absent" : "present" }));
    app.register(async (guarded) => {
      await guarded.register(keygateAuth, fx.options("pay"));
      guarded.get("/v1/me", me);
      // A plugin registered inside the guarded scope is covered too.
      guarded.register(async (nested) => { nested.get("/v1/nested", me); });
    });
    app.register(async (sibling) => { sibling.get("/public", async () => "public"); });
    const served = await serve(app);
    try {
      const health = await send(`${served.url}/health`);
      assert.deepEqual(health.body, { ok: true, keygate: "absent" });
      assert.equal((await send(`${served.url}/public`)).status, 200);
      assert.equal((await send(`${served.url}/v1/me`)).status, 401);
      assert.equal((await send(`${served.url}/v1/nested`)).status, 401);
      const { key } = await fx.key({ api: "pay" });
      assert.equal((await send(`${served.url}/v1/nested`, { headers: bearer(key) })).status, 200);
    } finally {
      await served.close();
    }
  });

  test("a denied request is answered in onRequest, before its body is parsed", async () => {
    const app = Fastify();
    let parsed = 0;
    app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => { parsed++; done(null, JSON.parse(body as string)); });
    await app.register(keygateAuth, fx.options("pay"));
    app.post("/v1/echo", async (request) => request.body);
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/v1/echo`, { method: "POST", body: { a: 1 } });
      assert.equal(res.status, 401);
      assert.equal(parsed, 0);
    } finally {
      await served.close();
    }
  });

  test("the service unreachable: the error reaches Fastify's error handler", async () => {
    const client = createKeygateClient({ baseUrl: "http://127.0.0.1:9", rootKey: ROOT_KEY, retries: 0 });
    const app = Fastify();
    const seen: unknown[] = [];
    app.setErrorHandler((error, _request, reply) => { seen.push(error); return reply.code(503).send({ error: "auth unavailable" }); });
    await app.register(keygateAuth, { client, api: "pay" });
    app.get("/v1/me", me);
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/v1/me`, { headers: bearer("pk_live_whatever") });
      assert.equal(res.status, 503);
      assert.ok(seen[0] instanceof KeygateNetworkError);
    } finally {
      await served.close();
    }
  });

  test("with trustProxy off, X-Forwarded-For is ignored: a client cannot claim an allowlisted address", async () => {
    const served = await serve(buildApp({ pay: fx.options("pay"), topup: fx.options("topup"), email: fx.options("email") }, false));
    try {
      const { key } = await fx.key({ api: "pay", ipAllowlist: ["203.0.113.0/24"] });
      const res = await send(`${served.url}/pay/me`, { headers: bearer(key), ip: "203.0.113.9" });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, "IP_NOT_ALLOWED");
    } finally {
      await served.close();
    }
  });

  test("the request id of a denial is Fastify's request.id", async () => {
    const app = Fastify({ genReqId: () => "req_fastify_42" });
    await app.register(keygateAuth, fx.options("pay"));
    app.get("/v1/me", me);
    const served = await serve(app);
    try {
      assert.equal((await send(`${served.url}/v1/me`)).body.requestId, "req_fastify_42");
    } finally {
      await served.close();
    }
  });

  test("requireScopes on a route keygateAuth does not cover is a programming error, thrown to the error handler", async () => {
    const app = Fastify();
    app.get("/open", { preHandler: requireScopes("wallets.read") }, async () => "never");
    const res = await app.inject({ url: "/open" });
    assert.equal(res.statusCode, 500);
    assert.match(res.json().message, /register keygateAuth before it/);
    await app.close();
  });
});
