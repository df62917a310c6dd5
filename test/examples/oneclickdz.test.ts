/**
 * examples/oneclickdz against shared/seeds/003, end to end: `keygate serve` with the example's
 * own keygate.yaml in front of real sandbox and production upstreams.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin, startEchoUpstream, startServe } from "../support/serve.js";
import type { Echo, ServedClock, ServedKeygate } from "../support/serve.js";
import { rawRequest } from "../http/gateway-support.js";

const ROOT = "oneclickdz-root-key-0123456789abcdefghijkl";
const CONFIG = new URL("../../examples/oneclickdz/keygate.yaml", import.meta.url).pathname;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("examples/oneclickdz reproduces the OneClickDz Flexy API authentication", () => {
  let dir: string;
  let kg: ServedKeygate;
  let production: Awaited<ReturnType<typeof startEchoUpstream>>;
  let sandbox: Awaited<ReturnType<typeof startEchoUpstream>>;
  let accountId: string;
  let clock: ServedClock;
  const call = (path: string, init: RequestInit = {}) => fetch(`${kg.url}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  const newKey = async (body: Record<string, unknown>) => (await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "oneclickdz", accountId, ...body })).body as { id: string; key: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-oneclickdz-"));
    production = await startEchoUpstream("production");
    sandbox = await startEchoUpstream("sandbox");
    kg = await startServe({ config: CONFIG, dataDir: dir, env: { UPSTREAM_URL: production.url, SANDBOX_UPSTREAM_URL: sandbox.url, KEYGATE_ROOT_KEY: ROOT }, clock: true });
    clock = kg.clock!;
    accountId = (await admin(kg.url, ROOT, "POST", "/v1/accounts", { name: "+213665983439", email: "owner@example.dz" })).body.id;
  });
  after(async () => {
    await kg?.stop();
    await production?.close();
    await sandbox?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("keys are UUIDs, shown once, for the sandbox and production environments", async () => {
    const created = await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "oneclickdz", accountId, environment: "sandbox" });
    assert.equal(created.status, 201);
    assert.match(created.body.key, UUID);
    const listed = await admin(kg.url, ROOT, "GET", `/v1/keys?accountId=${accountId}`);
    assert.ok(!JSON.stringify(listed.body).includes(created.body.key));
  });

  test("X-Access-Token reaches the right upstream per environment, without the key", async () => {
    const prod = await newKey({ environment: "production" });
    const sand = await newKey({ environment: "sandbox" });
    const a = (await (await call("/v3/balance", { headers: { "X-Access-Token": prod.key } })).json()) as Echo;
    assert.equal(a.upstream, "production");
    assert.equal(a.path, "/v3/balance");
    assert.equal(a.headers["x-access-token"], undefined);
    assert.equal(a.headers["x-keygate-key-id"], prod.id);
    const b = (await (await call("/v3/balance", { headers: { "x-access-token": sand.key } })).json()) as Echo;
    assert.equal(b.upstream, "sandbox");
    assert.equal(b.headers["x-keygate-environment"], "sandbox");
  });

  test("the X-Access-Token header name is matched whatever its case", async () => {
    const k = await newKey({ environment: "production" });
    // node:http sends header names as written; fetch would lower-case them.
    for (const name of ["X-Access-Token", "x-access-token", "X-ACCESS-TOKEN", "x-AcCeSs-ToKeN"]) {
      const res = await rawRequest(kg.url, { path: "/v3/balance", headers: { [name]: k.key } });
      assert.equal(res.status, 200, name);
      assert.equal((JSON.parse(res.body) as Echo).headers["x-keygate-key-id"], k.id, name);
    }
  });

  test("GET /v3/validate answers the seed's exact body", async () => {
    const k = await newKey({ environment: "sandbox" });
    const res = await call("/v3/validate", { headers: { "X-Access-Token": k.key } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      success: true,
      data: { username: "+213665983439", apiKey: { key: k.key, isEnabled: true, type: "SANDBOX", allowedips: [], scope: "READ-WRITE" } },
    });
    const ro = await newKey({ environment: "production", scopes: ["read"], ipAllowlist: ["127.0.0.1"] });
    const body = (await (await call("/v3/validate", { headers: { "X-Access-Token": ro.key } })).json()) as { data: { apiKey: Record<string, unknown> } };
    assert.deepEqual(body.data.apiKey, { key: ro.key, isEnabled: true, type: "PRODUCTION", allowedips: ["127.0.0.1"], scope: "READ-ONLY" });
  });

  test("400 MISSING_ACCESS_TOKEN without the header", async () => {
    const res = await call("/v3/balance");
    assert.equal(res.status, 400);
    const body = (await res.json()) as { success: boolean; error: { code: string; message: string }; requestId: string };
    assert.deepEqual({ success: body.success, error: body.error }, { success: false, error: { code: "MISSING_ACCESS_TOKEN", message: "Access token is required" } });
    assert.match(body.requestId, /^req_/);
  });

  test("READ-ONLY keys may read but not create transactions", async () => {
    const ro = await newKey({ scopes: ["read"] });
    assert.equal((await call("/v3/orders", { headers: { "X-Access-Token": ro.key } })).status, 200);
    const denied = await call("/v3/topup/send", { method: "POST", headers: { "X-Access-Token": ro.key, "content-type": "application/json" }, body: "{}" });
    assert.equal(denied.status, 403);
    const rw = await newKey({});
    assert.equal((await call("/v3/topup/send", { method: "POST", headers: { "X-Access-Token": rw.key, "content-type": "application/json" }, body: "{}" })).status, 200);
  });

  test("each environment has its own IP whitelist; empty allows all; the 403 names IP and environment", async () => {
    const prod = await newKey({ environment: "production" });
    const sand = await newKey({ environment: "sandbox" });
    const set = await admin(kg.url, ROOT, "PATCH", `/v1/accounts/${accountId}`, { ipAllowlists: { production: ["203.0.113.45", "198.51.100.23"] } });
    assert.equal(set.status, 200);
    const res = await call("/v3/balance", { headers: { "X-Access-Token": prod.key } });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { success: boolean; error: { code: string; message: string } };
    assert.equal(body.error.code, "IP_NOT_ALLOWED");
    assert.equal(body.error.message, "Your IP address 127.0.0.1 is not whitelisted for this PRODUCTION API key. Add your IP to the whitelist at https://oneclickdz.com/#/settings");
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": sand.key } })).status, 200);
    await admin(kg.url, ROOT, "PATCH", `/v1/accounts/${accountId}`, { ipAllowlists: { production: [] } });
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": prod.key } })).status, 200);
  });

  test("revoked keys fail at once; rotation keeps the old key for its grace period", async () => {
    const k = await newKey({});
    const rotated = await admin(kg.url, ROOT, "POST", `/v1/keys/${k.id}/rotate`, { gracePeriodSeconds: 3600 });
    assert.equal(rotated.status, 201);
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": k.key } })).status, 200);
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": rotated.body.key.key } })).status, 200);
    await admin(kg.url, ROOT, "POST", `/v1/keys/${rotated.body.key.id}/revoke`);
    const res = await call("/v3/balance", { headers: { "X-Access-Token": rotated.body.key.key } });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "INVALID_ACCESS_TOKEN");
  });

  test("a key past its expiry is refused as an invalid token, on calls and on /v3/validate", async () => {
    const k = await newKey({ expiresAt: new Date(clock.now() + 60_000).toISOString() });
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": k.key } })).status, 200);
    await clock.advance(61_000);
    for (const path of ["/v3/balance", "/v3/validate"]) {
      const res = await call(path, { headers: { "X-Access-Token": k.key } });
      assert.equal(res.status, 401, path);
      const body = (await res.json()) as { success: boolean; error: { code: string; message: string } };
      assert.equal(body.success, false);
      assert.equal(body.error.code, "INVALID_ACCESS_TOKEN");
      assert.equal(body.error.message, "The provided access token is invalid");
    }
    const listed = await admin(kg.url, ROOT, "GET", `/v1/keys/${k.id}`);
    assert.equal(listed.body.status, "expired");
  });

  // Last: it blocks 127.0.0.1 for 15 minutes (then moves the clock past the block).
  test("five invalid tokens count attemptsLeft down to 0, then 403 IP_BLOCKED for 15 minutes", async () => {
    // The revocation test above left one failure on 127.0.0.1's count; a valid call clears it.
    const fresh = await newKey({});
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": fresh.key } })).status, 200);
    const left: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call("/v3/balance", { headers: { "X-Access-Token": "ea27b376-9f5c-4b09-883f-1b96cd7b541c" } });
      assert.equal(res.status, 401);
      const body = (await res.json()) as { error: { code: string; message: string; details: { attemptsLeft: number } } };
      assert.equal(body.error.code, "INVALID_ACCESS_TOKEN");
      assert.equal(body.error.message, "The provided access token is invalid");
      left.push(body.error.details.attemptsLeft);
    }
    assert.deepEqual(left, [4, 3, 2, 1, 0]);
    const valid = await newKey({});
    const res = await call("/v3/balance", { headers: { "X-Access-Token": valid.key } });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.deepEqual(body.error, { code: "IP_BLOCKED", message: "Your IP has been temporarily blocked due to too many invalid attempts" });
    const retry = Number(res.headers.get("retry-after"));
    assert.ok(retry > 14 * 60 && retry <= 15 * 60, `Retry-After ${retry}`);
    await clock.advance(14 * 60_000);
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": valid.key } })).status, 403, "still blocked after 14 minutes");
    await clock.advance(61_000);
    assert.equal((await call("/v3/balance", { headers: { "X-Access-Token": valid.key } })).status, 200, "free again after 15");
  });
});
