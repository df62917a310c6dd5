/**
 * One suite for every framework and both modes: the same app (routes below) built with
 * Express, Fastify or Hono, verifying in-process or through a real keygate service, must
 * answer every request the same way.
 *
 * The app each framework builds, behind a proxy on loopback it trusts (so X-Forwarded-For is
 * the client address):
 *   GET  /pay/me              keygateAuth(pay)                                → { verdict }
 *   GET  /pay/wallets         + requireScopes("wallets.read")                 → { ok: "wallets" }
 *   POST /pay/wallets/debit   + requireScopes("wallets.read", "wallets.write") → { ok: "debit" }
 *   GET  /pay/raw             a response written past the framework's serializer: "raw"
 *   GET  /topup/balance       keygateAuth(topup, scopes: balance.read)         → { verdict }
 *   GET  /email/me            keygateAuth(email)                              → { verdict }
 *   GET  /pesa/me             keygateAuth(pesa), in-process only (JWTs)        → { verdict }
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { KeygateMiddlewareOptions } from "../../src/middleware/core.js";
import { bearer, createFixture, MODES, nextIp, send } from "./support.js";
import type { Fixture } from "./support.js";

export interface AppGates {
  pay: KeygateMiddlewareOptions;
  topup: KeygateMiddlewareOptions;
  email: KeygateMiddlewareOptions;
  pesa?: KeygateMiddlewareOptions | undefined;
}

export interface FrameworkUnderTest {
  name: string;
  start(gates: AppGates): Promise<{ url: string; close(): Promise<void> }>;
}

export function describeMiddleware(framework: FrameworkUnderTest): void {
  for (const mode of MODES) {
    describe(`${framework.name}, ${mode}`, () => {
      let fx: Fixture;
      let url: string;
      let close: () => Promise<void>;

      before(async () => {
        fx = await createFixture(mode);
        const app = await framework.start({
          pay: fx.options("pay"),
          topup: fx.options("topup", { scopes: ["balance.read"] }),
          email: fx.options("email"),
          pesa: mode === "in-process" ? fx.options("pesa") : undefined,
        });
        url = app.url;
        close = app.close;
      });
      after(async () => {
        await close?.();
        await fx?.close();
      });

      test("a valid key reaches the handler with its verdict, and the rate-limit headers are set", async () => {
        const { id, key } = await fx.key({ api: "pay", scopes: ["wallets.read"], rateLimit: { limit: 10, windowSeconds: 31_536_000 } });
        const res = await send(`${url}/pay/me`, { headers: bearer(key) });
        assert.equal(res.status, 200);
        assert.equal(res.body.verdict.valid, true);
        assert.equal(res.body.verdict.code, "VALID");
        assert.equal(res.body.verdict.keyId, id);
        assert.equal(res.body.verdict.accountId, fx.accountId);
        assert.deepEqual(res.body.verdict.scopes, ["wallets.read"]);
        assert.equal(res.headers.get("x-ratelimit-limit"), "10");
        assert.equal(res.headers.get("x-ratelimit-remaining"), "9");
        assert.match(res.headers.get("x-ratelimit-reset") ?? "", /^\d+$/);
        assert.equal(res.headers.get("ratelimit-policy"), '"default";q=10;w=31536000');
        assert.match(res.headers.get("ratelimit") ?? "", /^"default";r=9;t=\d+$/);
      });

      test("no credential: 401 MISSING_CREDENTIALS as a problem document with a bearer challenge and the request id", async () => {
        const res = await send(`${url}/pay/me`, { headers: { "x-request-id": "req_conformance_1" } });
        assert.equal(res.status, 401);
        assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
        assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="pay"');
        assert.equal(res.body.code, "MISSING_CREDENTIALS");
        assert.equal(res.body.status, 401);
        assert.equal(res.body.requestId, "req_conformance_1");
      });

      test("a revoked key is refused with REVOKED", async () => {
        const { id, key } = await fx.key({ api: "pay" });
        assert.equal((await send(`${url}/pay/me`, { headers: bearer(key) })).status, 200);
        await fx.keygate.keys.revoke(id);
        const res = await send(`${url}/pay/me`, { headers: bearer(key) });
        assert.equal(res.status, 401);
        assert.equal(res.body.code, "REVOKED");
        assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
      });

      test("wrong keys from one client count down attemptsLeft, then the client is blocked even with a good key", async () => {
        const ip = nextIp();
        const { key } = await fx.key({ api: "pay" });
        const wrong = `${key.slice(0, -6)}zzzzzz`;
        const left: number[] = [];
        for (let i = 0; i < 3; i++) {
          const res = await send(`${url}/pay/me`, { headers: bearer(wrong), ip });
          assert.equal(res.status, 401);
          left.push(res.body.attemptsLeft);
        }
        assert.deepEqual(left, [2, 1, 0]);
        const blocked = await send(`${url}/pay/me`, { headers: bearer(key), ip });
        assert.equal(blocked.status, 403);
        assert.equal(blocked.body.code, "IP_BLOCKED");
        assert.match(blocked.headers.get("retry-after") ?? "", /^\d+$/);
        // Another client is not affected.
        assert.equal((await send(`${url}/pay/me`, { headers: bearer(key) })).status, 200);
      });

      test("requireScopes admits a key holding every scope and denies one lacking any, naming what is missing", async () => {
        const reader = await fx.key({ api: "pay", scopes: ["wallets.read"], rateLimit: { limit: 100, windowSeconds: 31_536_000 } });
        const writer = await fx.key({ api: "pay", scopes: ["wallets.read", "wallets.write"] });
        assert.deepEqual((await send(`${url}/pay/wallets`, { headers: bearer(reader.key) })).body, { ok: "wallets" });
        const denied = await send(`${url}/pay/wallets/debit`, { method: "POST", headers: bearer(reader.key), body: { amount: 1 } });
        assert.equal(denied.status, 403);
        assert.equal(denied.body.code, "INSUFFICIENT_SCOPE");
        assert.deepEqual(denied.body.missingScopes, ["wallets.write"]);
        assert.match(denied.headers.get("www-authenticate") ?? "", /error="insufficient_scope"/);
        // The admission's rate-limit state is on the denial too.
        assert.equal(denied.headers.get("x-ratelimit-remaining"), "98");
        const allowed = await send(`${url}/pay/wallets/debit`, { method: "POST", headers: bearer(writer.key), body: { amount: 1 } });
        assert.equal(allowed.status, 200);
        assert.deepEqual(allowed.body, { ok: "debit" });
      });

      test("over the key's limit: 429 RATE_LIMITED with Retry-After and remaining 0", async () => {
        const { key } = await fx.key({ api: "pay", rateLimit: { limit: 2, windowSeconds: 31_536_000 } });
        assert.equal((await send(`${url}/pay/me`, { headers: bearer(key) })).status, 200);
        assert.equal((await send(`${url}/pay/me`, { headers: bearer(key) })).status, 200);
        const res = await send(`${url}/pay/me`, { headers: bearer(key) });
        assert.equal(res.status, 429);
        assert.equal(res.body.code, "RATE_LIMITED");
        assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
        assert.match(res.headers.get("retry-after") ?? "", /^\d+$/);
      });

      test("the client address is the framework's, after trusted proxies: the key's IP allowlist applies to it", async () => {
        const { key } = await fx.key({ api: "pay", ipAllowlist: ["203.0.113.0/24"] });
        const outside = await send(`${url}/pay/me`, { headers: bearer(key), ip: "198.51.100.250" });
        assert.equal(outside.status, 403);
        assert.equal(outside.body.code, "IP_NOT_ALLOWED");
        assert.equal((await send(`${url}/pay/me`, { headers: bearer(key), ip: "203.0.113.9" })).status, 200);
      });

      test("headers set at admission reach a response written past the framework's serializer", async () => {
        const { key } = await fx.key({ api: "pay", rateLimit: { limit: 5, windowSeconds: 31_536_000 } });
        const res = await send(`${url}/pay/raw`, { headers: bearer(key) });
        assert.equal(res.status, 200);
        assert.equal(res.text, "raw");
        assert.equal(res.headers.get("x-ratelimit-remaining"), "4");
      });

      test("a named-header API answers in its own error style (topup) and checks the gate's scopes in the verification", async () => {
        const missing = await send(`${url}/topup/balance`);
        assert.equal(missing.status, 400);
        assert.equal(missing.body.success, false);
        assert.equal(missing.body.error.code, "MISSING_ACCESS_TOKEN");
        assert.ok(!missing.headers.has("www-authenticate"), "no bearer challenge for a header scheme");

        const plain = await fx.key({ api: "topup", scopes: ["topup.send"], rateLimit: { limit: 5, windowSeconds: 31_536_000 } });
        const lacking = await send(`${url}/topup/balance`, { headers: { "x-access-token": plain.key } });
        assert.equal(lacking.status, 403);
        assert.equal(lacking.body.error.code, "INSUFFICIENT_SCOPE");
        assert.deepEqual(lacking.body.error.details, { missingScopes: ["balance.read"] });
        // Refused inside the verification, before the rate limit: no unit of it was used.
        assert.equal(lacking.headers.get("x-ratelimit-remaining"), null);
        assert.equal((await fx.keygate.verifyKey({ api: "topup", key: plain.key })).ratelimit?.remaining, 4);

        const good = await fx.key({ api: "topup", scopes: ["balance.read"] });
        const ok = await send(`${url}/topup/balance`, { headers: { "X-Access-Token": good.key } });
        assert.equal(ok.status, 200);
        assert.equal(ok.body.verdict.keyId, good.id);
      });

      test("an identity pair is read from both headers and must match the account's email", async () => {
        const { id, key } = await fx.key({ api: "email" });
        const ok = await send(`${url}/email/me`, { headers: { "x-email": "DEV@acme.test", "x-token": key } });
        assert.equal(ok.status, 200);
        assert.equal(ok.body.verdict.keyId, id);
        const wrongEmail = await send(`${url}/email/me`, { headers: { "x-email": "eve@acme.test", "x-token": key } });
        assert.equal(wrongEmail.status, 401);
        assert.deepEqual(wrongEmail.body.error, { code: "INVALID_API_KEY", message: "API key not found." });
        const half = await send(`${url}/email/me`, { headers: { "x-token": key } });
        assert.equal(half.status, 401);
        assert.deepEqual(half.body.error, { code: "INVALID_API_KEY", message: "API key is missing." });
      });

      if (mode === "in-process") {
        test("a JWT minted from a key is accepted, and refused once the key is revoked", async () => {
          const app = await fx.keygate.applications.create({ accountId: fx.accountId, api: "pesa", name: "shop" });
          const { id, key } = await fx.key({ api: "pesa", applicationId: app.id, scopes: ["payments.read"] });
          const issued = await fx.keygate.tokens.issue({ api: "pesa", clientId: app.clientId, key });
          assert.ok(issued.ok);
          const ok = await send(`${url}/pesa/me`, { headers: bearer(issued.token) });
          assert.equal(ok.status, 200);
          assert.equal(ok.body.verdict.keyId, id);
          await fx.keygate.keys.revoke(id);
          const refused = await send(`${url}/pesa/me`, { headers: bearer(issued.token) });
          assert.equal(refused.status, 401);
          assert.equal(refused.body.code, "REVOKED");
        });
      }
    });
  }
}
