/**
 * keygate/hono with a real Hono app served by @hono/node-server over real HTTP: the shared
 * conformance suite in both modes, then what is Hono's own: the client address comes from a
 * getter (default: the socket's peer), `c.get("keygate")` is typed, request ids come from
 * hono/request-id, errors reach `app.onError`.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Hono } from "hono";
import type { Context } from "hono";
import { requestId } from "hono/request-id";
import { serve as serveNode } from "@hono/node-server";
import type { ServerType } from "@hono/node-server";
import { getConnInfo } from "@hono/node-server/conninfo";
import { keygateAuth, requireScopes } from "../../src/middleware/hono/index.js";
import type { KeygateEnv } from "../../src/middleware/hono/index.js";
import type { KeygateMiddlewareOptions } from "../../src/middleware/core.js";
import { createKeygateClient, KeygateNetworkError } from "../../src/client/index.js";
import { describeMiddleware } from "./conformance.js";
import type { AppGates } from "./conformance.js";
import { bearer, createFixture, ROOT_KEY, send } from "./support.js";
import type { Fixture } from "./support.js";

/** Behind a proxy on loopback: its X-Forwarded-For names the client; otherwise the socket does. */
const trustedProxyIp = (c: Context): string | undefined => {
  const peer = getConnInfo(c).remote.address;
  const forwarded = c.req.header("x-forwarded-for")?.split(",").pop()?.trim();
  return peer === "127.0.0.1" && forwarded ? forwarded : peer;
};

async function serve(app: Hono<any>): Promise<{ url: string; close(): Promise<void> }> {
  const server = await new Promise<ServerType>((resolve) => {
    const s = serveNode({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve, reject) => {
      if ("closeAllConnections" in server) server.closeAllConnections();
      server.close((e) => (e ? reject(e) : resolve()));
    }),
  };
}

const gate = (options: KeygateMiddlewareOptions) => keygateAuth({ ...options, ip: trustedProxyIp });

function buildApp(gates: AppGates): Hono<KeygateEnv> {
  const app = new Hono<KeygateEnv>();
  app.use("/pay/*", gate(gates.pay));
  // Typed through KeygateEnv: no cast needed.
  app.get("/pay/me", (c) => c.json({ verdict: c.get("keygate") }));
  app.get("/pay/wallets", requireScopes("wallets.read"), (c) => c.json({ ok: "wallets" }));
  app.post("/pay/wallets/debit", requireScopes("wallets.read", "wallets.write"), (c) => c.json({ ok: "debit" }));
  app.get("/pay/raw", () => new Response("raw", { headers: { "content-type": "text/plain" } }));
  // Chained: the handler's c.get("keygate") is typed by the middleware's env.
  app.get("/topup/balance", gate(gates.topup), (c) => c.json({ verdict: c.get("keygate") }));
  app.get("/email/me", gate(gates.email), (c) => c.json({ verdict: c.get("keygate") }));
  if (gates.pesa) app.get("/pesa/me", gate(gates.pesa), (c) => c.json({ verdict: c.get("keygate") }));
  return app;
}

describeMiddleware({ name: "Hono", start: async (gates) => serve(buildApp(gates)) });

describe("Hono specifics", () => {
  let fx: Fixture;
  before(async () => { fx = await createFixture("in-process"); });
  after(async () => { await fx?.close(); });

  test("without an ip getter the socket's peer address is used, so X-Forwarded-For cannot claim an allowlisted address", async () => {
    const app = new Hono();
    app.get("/v1/me", keygateAuth(fx.options("pay")), (c) => c.json({ keyId: c.get("keygate").keyId }));
    const served = await serve(app);
    try {
      const local = await fx.key({ api: "pay", ipAllowlist: ["127.0.0.1"] });
      assert.equal((await send(`${served.url}/v1/me`, { headers: bearer(local.key) })).body.keyId, local.id);
      const remote = await fx.key({ api: "pay", ipAllowlist: ["203.0.113.0/24"] });
      const res = await send(`${served.url}/v1/me`, { headers: bearer(remote.key), ip: "203.0.113.9" });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, "IP_NOT_ALLOWED");
    } finally {
      await served.close();
    }
  });

  test("the request id of a denial is hono/request-id's when that middleware runs first", async () => {
    const app = new Hono();
    app.use(requestId({ generator: () => "req_hono_7" }));
    app.get("/v1/me", keygateAuth(fx.options("pay")), (c) => c.text("ok"));
    const served = await serve(app);
    try {
      assert.equal((await send(`${served.url}/v1/me`)).body.requestId, "req_hono_7");
    } finally {
      await served.close();
    }
  });

  test("headers other middleware set before keygateAuth survive a denial", async () => {
    const app = new Hono();
    app.use(async (c, next) => { c.header("x-powered-by", "test"); await next(); });
    app.get("/v1/me", keygateAuth(fx.options("pay")), (c) => c.text("ok"));
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/v1/me`);
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("x-powered-by"), "test");
      assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
    } finally {
      await served.close();
    }
  });

  test("rate-limit headers reach a response whose headers are immutable (Response.redirect)", async () => {
    const app = new Hono();
    app.get("/v1/go", keygateAuth(fx.options("pay")), () => Response.redirect("http://127.0.0.1/elsewhere", 302));
    const { key } = await fx.key({ api: "pay", rateLimit: { limit: 3, windowSeconds: 31_536_000 } });
    const res = await app.request("/v1/go", { headers: bearer(key) });
    assert.equal(res.status, 302);
    assert.equal(res.headers.get("location"), "http://127.0.0.1/elsewhere");
    assert.equal(res.headers.get("x-ratelimit-remaining"), "2");
  });

  test("the service unreachable: the error reaches app.onError", async () => {
    const client = createKeygateClient({ baseUrl: "http://127.0.0.1:9", rootKey: ROOT_KEY, retries: 0 });
    const app = new Hono();
    const seen: unknown[] = [];
    app.onError((error, c) => { seen.push(error); return c.json({ error: "auth unavailable" }, 503); });
    app.get("/v1/me", keygateAuth({ client, api: "pay" }), (c) => c.text("ok"));
    const res = await app.request("/v1/me", { headers: bearer("pk_live_whatever") });
    assert.equal(res.status, 503);
    assert.ok(seen[0] instanceof KeygateNetworkError);
  });

  test("requireScopes on a route keygateAuth does not cover is a programming error, thrown to app.onError", async () => {
    const app = new Hono();
    app.onError((error, c) => c.text(error.message, 500));
    app.get("/open", requireScopes("wallets.read"), (c) => c.text("never"));
    const res = await app.request("/open");
    assert.equal(res.status, 500);
    assert.match(await res.text(), /register keygateAuth before it/);
  });
});
