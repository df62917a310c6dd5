/**
 * examples/clickyid against shared/seeds/004, end to end: `keygate serve` with the example's
 * own keygate.yaml in front of a real upstream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin, startEchoUpstream, startServe } from "../support/serve.js";
import type { Echo, ServedKeygate } from "../support/serve.js";
import { rawRequest } from "../http/gateway-support.js";

const ROOT = "clickyid-root-key-0123456789abcdefghijklmnop";
const CONFIG = new URL("../../examples/clickyid/keygate.yaml", import.meta.url).pathname;

describe("examples/clickyid reproduces the ClickyID API key authentication", () => {
  let dir: string;
  let kg: ServedKeygate;
  let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
  let accountId: string;
  const call = (path: string, key: string | null, init: RequestInit = {}) =>
    fetch(`${kg.url}${path}`, { ...init, headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(init.headers as Record<string, string> | undefined) }, signal: AbortSignal.timeout(10_000) });
  const newKey = async (body: Record<string, unknown>) => (await admin(kg.url, ROOT, "POST", "/v1/keys", { api: "clickyid", accountId, ...body })).body as { id: string; key: string };
  const bulk = (key: string, type: string) => call("/validate/bulk", key, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ type, emails: ["a@example.test"] }) });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-clickyid-"));
    upstream = await startEchoUpstream();
    kg = await startServe({ config: CONFIG, dataDir: dir, env: { UPSTREAM_URL: upstream.url, KEYGATE_ROOT_KEY: ROOT }, clock: true });
    accountId = (await admin(kg.url, ROOT, "POST", "/v1/accounts", { name: "Acme team", email: "team@acme.test" })).body.id;
  });
  after(async () => {
    await kg?.stop();
    await upstream?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("live and test keys: ck_live_ / ck_test_ + 40 hex characters", async () => {
    assert.match((await newKey({ scopes: ["validate:offers"] })).key, /^ck_live_[0-9a-f]{40}$/);
    assert.match((await newKey({ environment: "test", scopes: ["validate:offers"] })).key, /^ck_test_[0-9a-f]{40}$/);
  });

  test("Authorization: Bearer reaches the API; every response carries X-RateLimit-*", async () => {
    const k = await newKey({ scopes: ["validate:offers"] });
    const res = await call("/offers", k.key);
    assert.equal(res.status, 200);
    const echo = (await res.json()) as Echo;
    assert.equal(echo.path, "/offers");
    assert.equal(echo.headers.authorization, undefined);
    assert.equal(res.headers.get("x-ratelimit-limit"), "1000");
    assert.equal(res.headers.get("x-ratelimit-remaining"), "999");
    const reset = Number(res.headers.get("x-ratelimit-reset"));
    assert.equal(reset % 3600, 0, "hourly windows reset on the hour");
    assert.ok(reset * 1000 > Date.now() && reset * 1000 <= Date.now() + 3_600_000);
  });

  test("the Authorization header name is matched whatever its case", async () => {
    const k = await newKey({ scopes: ["validate:offers"] });
    // node:http sends header names as written; fetch would lower-case them.
    for (const name of ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"]) {
      const res = await rawRequest(kg.url, { path: "/offers", headers: { [name]: `Bearer ${k.key}` } });
      assert.equal(res.status, 200, name);
      const echo = JSON.parse(res.body) as Echo;
      assert.equal(echo.headers["x-keygate-key-id"], k.id, name);
      assert.equal(echo.headers.authorization, undefined, `${name} is stripped whatever its case`);
    }
  });

  test("scopes per endpoint", async () => {
    const offers = await newKey({ scopes: ["validate:offers"] });
    const groups = await newKey({ scopes: ["validate:target-groups"] });
    assert.equal((await call("/offers", offers.key)).status, 200);
    assert.equal((await call("/validate/offer", offers.key, { method: "POST" })).status, 200);
    assert.equal((await call("/target-groups", offers.key)).status, 403);
    assert.equal((await call("/validate/target-group", offers.key, { method: "POST" })).status, 403);
    assert.equal((await call("/target-groups", groups.key)).status, 200);
    const denied = await call("/offers", groups.key);
    assert.equal(denied.status, 403);
    assert.match(denied.headers.get("www-authenticate") ?? "", /error="insufficient_scope"/);
  });

  test("/validate/bulk needs the scope of what is validated", async () => {
    const offers = await newKey({ scopes: ["validate:offers"] });
    assert.equal((await bulk(offers.key, "offers")).status, 200);
    assert.equal((await bulk(offers.key, "target-groups")).status, 403);
    const echo = (await (await bulk(offers.key, "offers")).json()) as Echo;
    assert.equal(JSON.parse(echo.body).type, "offers", "the body reaches the upstream unchanged");
  });

  test("custom per-key limits; 429 with Retry-After past the limit", async () => {
    const k = await newKey({ scopes: ["validate:offers"], rateLimit: { limit: 3, windowSeconds: 3600 } });
    for (let i = 3; i > 0; i--) {
      const res = await call("/offers", k.key);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-ratelimit-remaining"), String(i - 1));
    }
    const res = await call("/offers", k.key);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    assert.equal(((await res.json()) as { code: string }).code, "RATE_LIMITED");
  });

  test("test keys get the higher default limit", async () => {
    const k = await newKey({ environment: "test", scopes: ["validate:offers"] });
    const res = await call("/offers", k.key);
    assert.equal(res.headers.get("x-ratelimit-limit"), "10000");
    assert.match(res.headers.get("ratelimit-policy") ?? "", /q=10000;w=3600/);
  });

  test("invalid, revoked and missing keys are 401 problem documents", async () => {
    const none = await call("/offers", null);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.equal(((await none.json()) as { code: string }).code, "MISSING_CREDENTIALS");
    const k = await newKey({ scopes: ["validate:offers"] });
    await admin(kg.url, ROOT, "POST", `/v1/keys/${k.id}/revoke`);
    const revoked = await call("/offers", k.key);
    assert.equal(revoked.status, 401);
    assert.equal(((await revoked.json()) as { code: string }).code, "REVOKED");
  });
  // Last: it moves keygate's clock forward.
  test("a key past its expiresAt is a 401 EXPIRED problem document with an invalid_token challenge", async () => {
    const clock = kg.clock!;
    const k = await newKey({ scopes: ["validate:offers"], expiresAt: new Date(clock.now() + 60_000).toISOString() });
    assert.equal((await call("/offers", k.key)).status, 200);
    await clock.advance(59_000);
    assert.equal((await call("/offers", k.key)).status, 200, "still valid a second before");
    await clock.advance(2_000);
    const res = await call("/offers", k.key);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="clickyid", error="invalid_token"/);
    const body = (await res.json()) as { code: string; detail: string; status: number };
    assert.deepEqual([body.status, body.code, body.detail], [401, "EXPIRED", "The API key has expired."]);
  });
});
