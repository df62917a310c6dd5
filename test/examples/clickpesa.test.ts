/**
 * examples/clickpesa against shared/seeds/002, end to end: `keygate serve` with the example's
 * own keygate.yaml in front of a real upstream. Applications with features, a Client ID that
 * stays visible, an API key shown once, and the Client ID + API key → 1-hour JWT exchange.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { admin, startEchoUpstream, startServe } from "../support/serve.js";
import type { Echo, ServedKeygate } from "../support/serve.js";

const ROOT = "clickpesa-root-key-0123456789abcdefghijklmn";
const CONFIG = new URL("../../examples/clickpesa/keygate.yaml", import.meta.url).pathname;

describe("examples/clickpesa reproduces the ClickPesa API authentication", () => {
  let dir: string;
  let kg: ServedKeygate;
  let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
  let accountId: string;
  const call = (path: string, headers: Record<string, string>, init: RequestInit = {}) =>
    fetch(`${kg.url}${path}`, { ...init, headers, signal: AbortSignal.timeout(10_000) });
  const newApplication = async (features: string[]) =>
    (await admin(kg.url, ROOT, "POST", "/v1/applications", { accountId, api: "clickpesa", name: "My shop", integrationType: "api", features })).body as { id: string; clientId: string };
  const newKey = async (applicationId: string, body: Record<string, unknown> = {}) =>
    (await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "clickpesa", accountId, applicationId, name: "server", ...body })).body as { id: string; key: string; expiresAt: string | null };
  const generateToken = (clientId: string, apiKey: string) =>
    call("/third-parties/generate-token", { "client-id": clientId, "api-key": apiKey }, { method: "POST" });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-clickpesa-"));
    upstream = await startEchoUpstream();
    kg = await startServe({ config: CONFIG, dataDir: dir, env: { UPSTREAM_URL: upstream.url, KEYGATE_ROOT_KEY: ROOT }, clock: true });
    accountId = (await admin(kg.url, ROOT, "POST", "/v1/accounts", { name: "My shop Ltd", email: "dev@myshop.test" })).body.id;
  });
  after(async () => {
    await kg?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an application (name, integration type API, features) has a Client ID that stays accessible", async () => {
    const app = await newApplication(["payment-api", "payout-api"]);
    assert.match(app.clientId, /^ID[0-9A-Za-z]{30}$/);
    const again = await admin(kg.url, ROOT, "GET", `/v1/applications/${app.id}`);
    assert.equal(again.body.clientId, app.clientId);
    assert.equal(again.body.integrationType, "api");
    assert.deepEqual(again.body.scopes, ["payments.read", "payments.write", "payouts.read", "payouts.write"]);
  });

  test("an API key with a name and an expiry date is displayed once; the list shows name and last activity", async () => {
    const app = await newApplication(["payment-api"]);
    const expiresAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const k = await newKey(app.id, { expiresAt });
    assert.match(k.key, /^SK_[0-9A-Za-z]{40}$/);
    assert.equal(k.expiresAt, expiresAt);
    const listed = await admin(kg.url, ROOT, "GET", `/v1/keys?accountId=${accountId}`);
    const row = listed.body.data.find((r: { id: string }) => r.id === k.id);
    assert.equal(row.name, "server");
    assert.equal(row.lastUsedAt, null);
    assert.ok(!JSON.stringify(listed.body).includes(k.key), "the secret is never shown again");
    const files = readdirSync(dir).filter((f) => f.startsWith("keygate.db"));
    assert.ok(files.length > 0, `the SQLite files in ${dir}`);
    for (const file of files) {
      assert.ok(!readFileSync(join(dir, file)).includes(k.key), `nor stored (${file})`);
    }
  });

  test("Client ID + API key → {success: true, token: 'Bearer <jwt>'}, valid for one hour", async () => {
    const app = await newApplication(["payment-api"]);
    const k = await newKey(app.id);
    const res = await generateToken(app.clientId, k.key);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const body = (await res.json()) as { success: boolean; token: string };
    assert.deepEqual(Object.keys(body), ["success", "token"]);
    assert.equal(body.success, true);
    assert.match(body.token, /^Bearer ey[\w-]+\.[\w-]+\.[\w-]+$/);
    const claims = decodeJwt(body.token.slice(7));
    assert.equal(claims.exp! - claims.iat!, 3600);
    // Verifiable by anyone with the published keys.
    const jwks = createRemoteJWKSet(new URL(`${kg.url}/.well-known/jwks.json`));
    const { payload, protectedHeader } = await jwtVerify(body.token.slice(7), jwks, { issuer: "clickpesa", audience: "clickpesa", algorithms: ["EdDSA"] });
    assert.equal(payload.sub, k.id);
    assert.equal(typeof protectedHeader.kid, "string");
  });

  test("the token is used in all subsequent calls, exactly as returned, with its features' scopes", async () => {
    const app = await newApplication(["payment-api"]);
    const k = await newKey(app.id);
    const { token } = (await (await generateToken(app.clientId, k.key)).json()) as { token: string };
    const res = await call("/third-parties/payments/ORDER-1", { authorization: token });
    assert.equal(res.status, 200);
    const echo = (await res.json()) as Echo;
    assert.equal(echo.path, "/third-parties/payments/ORDER-1");
    assert.equal(echo.headers.authorization, undefined);
    assert.equal(echo.headers["x-keygate-application-id"], app.id);
    assert.equal((await call("/third-parties/account/balance", { authorization: token })).status, 200);
    const payout = await call("/third-parties/payouts/P-1", { authorization: token, "content-type": "application/json" }, { method: "POST", body: "{}" });
    assert.equal(payout.status, 403);
    assert.equal(((await payout.json()) as { code: string }).code, "INSUFFICIENT_SCOPE");
    // The API key itself does not open the API: it is exchanged, never sent on calls.
    const direct = await call("/third-parties/payments/ORDER-1", { authorization: `Bearer ${k.key}` });
    assert.equal(direct.status, 401);
    assert.match(direct.headers.get("www-authenticate") ?? "", /invalid_token/);
  });

  test("the API key's last activity is recorded; revoking it stops its key and its tokens", async () => {
    const app = await newApplication(["payment-api"]);
    const k = await newKey(app.id);
    const { token } = (await (await generateToken(app.clientId, k.key)).json()) as { token: string };
    assert.equal((await call("/third-parties/payments/1", { authorization: token })).status, 200);
    const used = await admin(kg.url, ROOT, "GET", `/v1/keys/${k.id}`);
    assert.notEqual(used.body.lastUsedAt, null);
    assert.equal((await admin(kg.url, ROOT, "POST", `/v1/keys/${k.id}/revoke`)).status, 200);
    const refused = await call("/third-parties/payments/1", { authorization: token });
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { code: string }).code, "REVOKED");
    assert.equal((await generateToken(app.clientId, k.key)).status, 401);
  });

  test("a key of one application cannot be exchanged with another application's Client ID", async () => {
    const a = await newApplication(["payment-api"]);
    const b = await newApplication(["payment-api"]);
    const k = await newKey(a.id);
    assert.equal((await generateToken(b.clientId, k.key)).status, 401);
    assert.equal((await generateToken(a.clientId, k.key)).status, 200);
  });

  test("RFC 6749 client credentials work too, at /oauth/token", async () => {
    const app = await newApplication(["payout-api"]);
    const k = await newKey(app.id);
    const res = await fetch(`${kg.url}/oauth/token`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${app.clientId}:${k.key}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials",
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { access_token: string; token_type: string; expires_in: number };
    assert.equal(body.token_type, "Bearer");
    assert.equal(body.expires_in, 3600);
    assert.equal((await call("/third-parties/payouts/P-1", { authorization: `Bearer ${body.access_token}` }, { method: "POST" })).status, 200);
  });
  test("a JWT past its exp gets 401 TOKEN_EXPIRED; a new exchange gives a working one", async () => {
    const clock = kg.clock!;
    const app = await newApplication(["payment-api"]);
    const k = await newKey(app.id, { expiresAt: new Date(clock.now() + 30 * 86_400_000).toISOString() });
    const { token } = (await (await generateToken(app.clientId, k.key)).json()) as { token: string };
    assert.equal((await call("/third-parties/payments/1", { authorization: token })).status, 200);
    // The served clock keeps running between calls, and exp is in whole seconds (iat rounded
    // down), so the test moves to half a second before the token's own exp rather than a fixed
    // 3,599 s on: a token issued at x.98 s would otherwise expire within the test's own run time.
    const claims = decodeJwt(token.replace(/^Bearer /, "")) as { iat: number; exp: number };
    assert.equal(claims.exp - claims.iat, 3600, "valid for one hour");
    await clock.advance(claims.exp * 1000 - 500 - clock.now());
    assert.equal((await call("/third-parties/payments/1", { authorization: token })).status, 200, "valid to the end of its hour");
    await clock.advance(1_000);
    const res = await call("/third-parties/payments/1", { authorization: token });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
    const body = (await res.json()) as { code: string; detail: string };
    assert.deepEqual([body.code, body.detail], ["TOKEN_EXPIRED", "The access token has expired; exchange the Client ID and API key for a new one."]);
    const again = (await (await generateToken(app.clientId, k.key)).json()) as { token: string };
    assert.equal((await call("/third-parties/payments/1", { authorization: again.token })).status, 200);
  });

  test("an API key that expires stops its JWTs at once, and no JWT outlives its key", async () => {
    const clock = kg.clock!;
    const app = await newApplication(["payment-api"]);
    const k = await newKey(app.id, { expiresAt: new Date(clock.now() + 2 * 86_400_000).toISOString() });
    const { token } = (await (await generateToken(app.clientId, k.key)).json()) as { token: string };
    assert.equal((await call("/third-parties/payments/1", { authorization: token })).status, 200);
    // The key's expiry moves before the token's exp: the token must stop with the key.
    const soon = new Date(clock.now() + 60_000).toISOString();
    assert.equal((await admin(kg.url, ROOT, "PATCH", `/v1/keys/${k.id}`, { expiresAt: soon })).status, 200);
    assert.equal((await call("/third-parties/payments/1", { authorization: token })).status, 200);
    await clock.advance(61_000);
    const refused = await call("/third-parties/payments/1", { authorization: token });
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { code: string }).code, "EXPIRED");
    const exchange = await generateToken(app.clientId, k.key);
    assert.equal(exchange.status, 401);
    assert.equal(((await exchange.json()) as { code: string }).code, "EXPIRED");

    const short = await newKey(app.id, { expiresAt: new Date(clock.now() + 600_000).toISOString() });
    const minted = (await (await generateToken(app.clientId, short.key)).json()) as { token: string };
    assert.equal(decodeJwt(minted.token.slice(7)).exp, Math.floor(Date.parse(short.expiresAt!) / 1000), "exp is the key's expiry, not an hour");
  });

  // Last: it blocks 127.0.0.1, then moves the clock past the block.
  test("five failed exchanges count attemptsLeft down; the address is then blocked for 15 minutes", async () => {
    const clock = kg.clock!;
    const a = await newApplication(["payment-api"]);
    const b = await newApplication(["payment-api"]);
    const k = await newKey(a.id);
    // A success clears what earlier tests left on 127.0.0.1's count.
    assert.equal((await generateToken(a.clientId, k.key)).status, 200);
    const left: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await generateToken(b.clientId, k.key);
      assert.equal(res.status, 401);
      const body = (await res.json()) as { code: string; attemptsLeft: number };
      assert.equal(body.code, "NOT_FOUND");
      left.push(body.attemptsLeft);
    }
    assert.deepEqual(left, [4, 3, 2, 1, 0]);
    const blocked = await generateToken(a.clientId, k.key);
    assert.equal(blocked.status, 403);
    assert.equal(((await blocked.json()) as { code: string }).code, "IP_BLOCKED");
    const retry = Number(blocked.headers.get("retry-after"));
    assert.ok(retry > 14 * 60 && retry <= 15 * 60, `Retry-After ${retry}`);
    await clock.advance(14 * 60_000);
    assert.equal((await generateToken(a.clientId, k.key)).status, 403, "still blocked after 14 minutes");
    await clock.advance(61_000);
    assert.equal((await generateToken(a.clientId, k.key)).status, 200, "free again after 15");
  });
});
