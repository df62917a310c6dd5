/**
 * keygate/express with a real Express app over real HTTP: the shared conformance suite in
 * both modes, then what is Express's own: `trust proxy` decides the client address, errors
 * go to `next(error)`, and `req.keygate` is typed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import express from "express";
import type { ErrorRequestHandler, Request, RequestHandler, Response } from "express";
import { keygateAuth, requireScopes } from "../../src/middleware/express/index.js";
import type { KeygateExpressOptions } from "../../src/middleware/express/index.js";
import { createKeygateClient, KeygateNetworkError } from "../../src/client/index.js";
import { describeMiddleware } from "./conformance.js";
import type { AppGates } from "./conformance.js";
import { createKeygate } from "../../src/keygate.js";
import { createManualClock } from "../../src/lib/clock.js";
import { bearer, closeServer, CONFIG, createFixture, listen, ROOT_KEY, send } from "./support.js";
import type { Fixture } from "./support.js";

const me: RequestHandler = (req, res) => {
  // Typed by the module augmentation: no cast needed.
  const keyId: string | undefined = req.keygate?.keyId;
  assert.equal(typeof keyId, "string");
  res.json({ verdict: req.keygate });
};

async function serve(app: express.Express): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(app);
  const url = await listen(server);
  return { url, close: () => closeServer(server) };
}

function buildApp(gates: AppGates, trustProxy: string | false = "loopback"): express.Express {
  const app = express();
  app.set("trust proxy", trustProxy);
  const pay = express.Router();
  pay.use(keygateAuth(gates.pay));
  pay.get("/me", me);
  pay.get("/wallets", requireScopes("wallets.read"), (_req, res) => { res.json({ ok: "wallets" }); });
  pay.post("/wallets/debit", express.json(), requireScopes("wallets.read", "wallets.write"), (_req, res) => { res.json({ ok: "debit" }); });
  pay.get("/raw", (_req, res) => { res.writeHead(200, { "content-type": "text/plain" }); res.end("raw"); });
  app.use("/pay", pay);
  app.get("/topup/balance", keygateAuth(gates.topup), me);
  app.get("/email/me", keygateAuth(gates.email), me);
  if (gates.pesa) app.get("/pesa/me", keygateAuth(gates.pesa), me);
  return app;
}

describeMiddleware({ name: "Express", start: async (gates) => serve(buildApp(gates)) });

describe("Express specifics", () => {
  let fx: Fixture;
  before(async () => { fx = await createFixture("in-process"); });
  after(async () => { await fx?.close(); });

  test("with trust proxy off, X-Forwarded-For is ignored: a client cannot claim an allowlisted address", async () => {
    const app = await serve(buildApp({ pay: fx.options("pay"), topup: fx.options("topup"), email: fx.options("email") }, false));
    try {
      const { key } = await fx.key({ api: "pay", ipAllowlist: ["203.0.113.0/24"] });
      const res = await send(`${app.url}/pay/me`, { headers: bearer(key), ip: "203.0.113.9" });
      assert.equal(res.status, 403);
      assert.equal(res.body.code, "IP_NOT_ALLOWED");
    } finally {
      await app.close();
    }
  });

  test("the service unreachable: the error goes to next(error), and the app's error handler answers", async () => {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    const client = createKeygateClient({ baseUrl: "http://127.0.0.1:9", rootKey: ROOT_KEY, retries: 0 });
    const seen: unknown[] = [];
    const app = express();
    app.get("/pay/me", keygateAuth({ client, api: "pay" }), me);
    const onError: ErrorRequestHandler = (error, _req, res, _next) => {
      seen.push(error);
      res.status(503).json({ error: "auth unavailable" });
    };
    app.use(onError);
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/pay/me`, { headers: bearer("pk_live_whatever") });
      assert.equal(res.status, 503);
      assert.equal(seen.length, 1);
      assert.ok(seen[0] instanceof KeygateNetworkError);
      assert.equal((seen[0] as KeygateNetworkError).code, "NETWORK_ERROR");
    } finally {
      await served.close();
    }
  });

  test("requireScopes on a route keygateAuth does not cover is a programming error, sent to next(error)", async () => {
    const app = express();
    app.get("/open", requireScopes("wallets.read"), (_req, res) => { res.send("never"); });
    app.use(((error, _req, res, _next) => { res.status(500).send(String(error.message)); }) as ErrorRequestHandler);
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/open`);
      assert.equal(res.status, 500);
      assert.match(res.text, /register keygateAuth before it/);
    } finally {
      await served.close();
    }
  });

  test("the request id of a denial comes from the requestId option when given", async () => {
    const app = express();
    const options: KeygateExpressOptions = { ...fx.options("pay"), requestId: (req: Request) => `req_custom_${req.get("x-trace") ?? "none"}` };
    app.get("/pay/me", keygateAuth(options), (_req: Request, res: Response) => { res.send("ok"); });
    const served = await serve(app);
    try {
      const res = await send(`${served.url}/pay/me`, { headers: { "x-trace": "abc" } });
      assert.equal(res.body.requestId, "req_custom_abc");
    } finally {
      await served.close();
    }
  });

  test("mistakes are refused when the app is built, not per request", () => {
    assert.throws(() => keygateAuth({ keygate: fx.keygate, api: "nope" }), /no API "nope" in the keygate config; known: pay, topup, email, pesa/);
    assert.throws(() => requireScopes(), /one or more non-empty scope names/);
    assert.throws(() => keygateAuth({} as KeygateExpressOptions), /pass \{ keygate, api \}/);
  });
});

describe("in-process rate-limit headers use the keygate's clock", () => {
  test("with a frozen clock, t= is the seconds left in the key's window by that clock", async () => {
    const T0 = Date.parse("2026-01-01T00:00:00Z");
    const clock = createManualClock(T0 + 20_000); // 20 s into a minute window
    const keygate = await createKeygate({ config: CONFIG, clock });
    const app = express();
    app.use(keygateAuth({ keygate, api: "pay" }));
    app.get("/me", (_req, res) => { res.json({ ok: true }); });
    const served = await serve(app);
    try {
      const account = await keygate.accounts.create({ name: "Clock", email: "clock@example.test" });
      const { key } = await keygate.keys.create({ api: "pay", accountId: account.id, rateLimit: { limit: 5, windowSeconds: 60 } });
      const res = await send(`${served.url}/me`, { headers: bearer(key) });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-ratelimit-reset"), String((T0 + 60_000) / 1000));
      assert.equal(res.headers.get("ratelimit"), '"default";r=4;t=40');
    } finally {
      await served.close();
      await keygate.close();
    }
  });
});
