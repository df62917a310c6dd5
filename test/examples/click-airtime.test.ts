/**
 * examples/click-airtime against shared/seeds/000 (V1) and 001 (V2), end to end: one
 * `keygate serve` with the example's own keygate.yaml, both APIs sharing accounts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin, startEchoUpstream, startServe } from "../support/serve.js";
import type { Echo, ServedKeygate } from "../support/serve.js";

const ROOT = "click-airtime-root-key-0123456789abcdefghij";
const CONFIG = new URL("../../examples/click-airtime/keygate.yaml", import.meta.url).pathname;
const V1_TOKEN = "C8000000-000G-4474-0001-J0000"; // the seed's example token, imported unchanged
const V1_BODY = { message: "Invalid or missing authentication credentials", statusCode: 401 };

describe("examples/click-airtime reproduces the Click Airtime V1 and V2 authentication", () => {
  let dir: string;
  let kg: ServedKeygate;
  let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
  let accountId: string;
  const call = (path: string, headers: Record<string, string> = {}, init: RequestInit = {}) =>
    fetch(`${kg.url}${path}`, { ...init, headers, signal: AbortSignal.timeout(10_000) });
  const v2Key = async (body: Record<string, unknown>) => (await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "airtime-v2", accountId, ...body })).body as { id: string; key: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-airtime-"));
    upstream = await startEchoUpstream();
    kg = await startServe({ config: CONFIG, dataDir: dir, env: { UPSTREAM_URL: upstream.url, KEYGATE_ROOT_KEY: ROOT }, clock: true });
    accountId = (await admin(kg.url, ROOT, "POST", "/v1/accounts", { name: "Shop", email: "your@email.com" })).body.id;
  });
  after(async () => {
    await kg?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("V1: email + token headers", () => {
    let tokenId: string;
    before(async () => {
      const imported = await admin(kg.url, ROOT, "POST", "/v1/keys/import", { api: "airtime-v1", keys: [{ accountId, key: V1_TOKEN }] });
      assert.equal(imported.status, 201);
      assert.ok(!JSON.stringify(imported.body).includes(V1_TOKEN), "the token is not echoed back");
      tokenId = imported.body.keys[0].id;
    });

    test("an imported token in the seed's own format works with its email", async () => {
      const res = await call("/adp/balances", { "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": V1_TOKEN });
      assert.equal(res.status, 200);
      const echo = (await res.json()) as Echo;
      assert.equal(echo.path, "/adp/balances");
      assert.equal(echo.headers["x-click-airtime-token"], undefined);
      assert.equal(echo.headers["x-keygate-account-id"], accountId);
    });

    test("header names are matched whatever their case", async () => {
      const res = await call("/adp/balances", { "x-click-airtime-email": "YOUR@email.com", "x-click-airtime-token": V1_TOKEN });
      assert.equal(res.status, 200);
    });

    test("missing or invalid credentials are the seed's exact 401", async () => {
      const cases: Record<string, string>[] = [
        {},
        { "X-Click-Airtime-Email": "your@email.com" },
        { "X-Click-Airtime-Token": V1_TOKEN },
        { "X-Click-Airtime-Email": "someone@else.com", "X-Click-Airtime-Token": V1_TOKEN },
      ];
      for (const headers of cases) {
        const res = await call("/adp/balances", headers);
        assert.equal(res.status, 401, JSON.stringify(headers));
        assert.deepEqual(await res.json(), V1_BODY);
      }
    });

    test("the operator rotates and revokes tokens", async () => {
      const rotated = await admin(kg.url, ROOT, "POST", `/v1/keys/${tokenId}/rotate`, {});
      assert.equal(rotated.status, 201);
      const fresh = rotated.body.key.key as string;
      assert.equal((await call("/adp/balances", { "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": V1_TOKEN })).status, 401);
      assert.equal((await call("/adp/balances", { "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": fresh })).status, 200);
      await admin(kg.url, ROOT, "POST", `/v1/keys/${rotated.body.key.id}/revoke`);
      const res = await call("/adp/balances", { "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": fresh });
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), V1_BODY);
    });

    test("a token past its expiry gets the seed's exact 401", async () => {
      const created = await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "airtime-v1", accountId, expiresAt: new Date(kg.clock!.now() + 60_000).toISOString() });
      assert.equal(created.status, 201);
      const headers = { "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": created.body.key as string };
      assert.equal((await call("/adp/balances", headers)).status, 200);
      await kg.clock!.advance(61_000);
      const res = await call("/adp/balances", headers);
      assert.equal(res.status, 401);
      assert.deepEqual(await res.json(), V1_BODY);
    });
  });

  describe("V2: ce_live_ bearer keys with permissions", () => {
    test("keys are ce_live_ + 32 alphanumerics, 40 characters", async () => {
      const k = await v2Key({});
      assert.match(k.key, /^ce_live_[A-Za-z0-9]{32}$/);
      assert.equal(k.key.length, 40);
    });

    test("a key with the permission reaches the API; without it, 403 INSUFFICIENT_PERMISSIONS", async () => {
      const k = await v2Key({ scopes: ["wallets.read"] });
      const ok = await call("/v2/balance", { authorization: `Bearer ${k.key}` });
      assert.equal(ok.status, 200);
      assert.equal(((await ok.json()) as Echo).headers.authorization, undefined);
      const denied = await call("/v2/topups", { authorization: `Bearer ${k.key}`, "content-type": "application/json" }, { method: "POST", body: "{}" });
      assert.equal(denied.status, 403);
      assert.equal(((await denied.json()) as { error: { code: string } }).error.code, "INSUFFICIENT_PERMISSIONS");
      const writer = await v2Key({ scopes: ["airtime.write"] });
      assert.equal((await call("/v2/topups", { authorization: `Bearer ${writer.key}`, "content-type": "application/json" }, { method: "POST", body: "{}" })).status, 200);
      const history = await v2Key({ scopes: ["airtime.transactions.read"] });
      assert.equal((await call("/v2/transactions/tx_1", { authorization: `Bearer ${history.key}` })).status, 200);
    });

    test("each documented error code with its status", async () => {
      const code = async (res: Response) => ({ status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code });
      assert.deepEqual(await code(await call("/v2/balance")), { status: 401, code: "INVALID_API_KEY" });
      assert.deepEqual(await code(await call("/v2/balance", { authorization: "Bearer ce_live_short" })), { status: 401, code: "INVALID_API_KEY" });
      const expiring = await v2Key({ scopes: ["wallets.read"], expiresAt: new Date(kg.clock!.now() + 60_000).toISOString() });
      assert.equal((await call("/v2/balance", { authorization: `Bearer ${expiring.key}` })).status, 200);
      await kg.clock!.advance(61_000);
      assert.deepEqual(await code(await call("/v2/balance", { authorization: `Bearer ${expiring.key}` })), { status: 401, code: "EXPIRED_API_KEY" });
      const revoked = await v2Key({ scopes: ["wallets.read"] });
      await admin(kg.url, ROOT, "POST", `/v1/keys/${revoked.id}/revoke`);
      assert.deepEqual(await code(await call("/v2/balance", { authorization: `Bearer ${revoked.key}` })), { status: 401, code: "REVOKED_API_KEY" });
      const restricted = await v2Key({ scopes: ["wallets.read"], ipAllowlist: ["203.0.113.0/24"] });
      assert.deepEqual(await code(await call("/v2/balance", { authorization: `Bearer ${restricted.key}` })), { status: 403, code: "IP_NOT_ALLOWED" });
    });

    test("V1 and V2 share the account", async () => {
      const k = await v2Key({ scopes: ["wallets.read"] });
      const echo = (await (await call("/v2/balance", { authorization: `Bearer ${k.key}` })).json()) as Echo;
      assert.equal(echo.headers["x-keygate-account-id"], accountId);
    });
  });
  // Last: it blocks 127.0.0.1 on both APIs, then moves the clock past the blocks.
  test("five failures from one address block it for 15 minutes, on V1 and on V2 alike", async () => {
    const clock = kg.clock!;
    const v2 = await v2Key({ scopes: ["wallets.read"] });
    const v1 = (await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "airtime-v1", accountId })).body as { key: string };
    const v1Headers = (token: string) => ({ "X-Click-Airtime-Email": "your@email.com", "X-Click-Airtime-Token": token });
    // Successes clear what earlier tests left on 127.0.0.1's counts.
    assert.equal((await call("/v2/balance", { authorization: `Bearer ${v2.key}` })).status, 200);
    assert.equal((await call("/adp/balances", v1Headers(v1.key))).status, 200);
    for (let i = 0; i < 5; i++) {
      const res = await call("/v2/balance", { authorization: `Bearer ce_live_${"A".repeat(31)}${i}` });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_API_KEY");
      const old = await call("/adp/balances", v1Headers(`00000000-0000-4000-8000-00000000000${i}`));
      assert.equal(old.status, 401);
      assert.deepEqual(await old.json(), V1_BODY);
    }
    const blocked2 = await call("/v2/balance", { authorization: `Bearer ${v2.key}` });
    assert.equal(blocked2.status, 403);
    assert.equal(((await blocked2.json()) as { error: { code: string } }).error.code, "IP_BLOCKED");
    const retry = Number(blocked2.headers.get("retry-after"));
    assert.ok(retry > 14 * 60 && retry <= 15 * 60, `Retry-After ${retry}`);
    const blocked1 = await call("/adp/balances", v1Headers(v1.key));
    assert.equal(blocked1.status, 403);
    assert.equal(((await blocked1.json()) as { statusCode: number }).statusCode, 403);
    assert.ok(Number(blocked1.headers.get("retry-after")) > 14 * 60);

    await clock.advance(14 * 60_000);
    assert.equal((await call("/v2/balance", { authorization: `Bearer ${v2.key}` })).status, 403, "still blocked after 14 minutes");
    await clock.advance(61_000);
    assert.equal((await call("/v2/balance", { authorization: `Bearer ${v2.key}` })).status, 200, "free again after 15");
    assert.equal((await call("/adp/balances", v1Headers(v1.key))).status, 200);
  });
});
