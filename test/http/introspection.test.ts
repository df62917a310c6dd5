/**
 * The default key introspection style, `introspection.style: keygate`, over real HTTP: the body
 * documented in docs/configuration.md, its headers, and denials in the API's error style.
 * (The `oneclickdz` style is checked against its seed in test/examples/oneclickdz.test.ts.)
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "./gateway-support.js";
import type { RunningGateway } from "./gateway-support.js";

describe("introspection.style keygate: a client checks its own key", () => {
  let gw: RunningGateway;
  const whoami = (key?: string) => fetch(`${gw.url}/whoami`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

  before(async () => {
    gw = await startGateway({
      apis: [{
        id: "shop",
        keyFormat: { prefix: "sk" },
        scopes: ["orders.read", "orders.write"],
        features: { orders: ["orders.read", "orders.write"] },
        defaultScopes: ["orders.read"],
        rateLimit: { limit: 10, windowSeconds: 3600 },
        lockout: { enabled: false },
        introspection: { path: "/whoami" },
      }],
    });
  });
  after(async () => {
    await gw?.close();
  });

  test("the default style is keygate", () => {
    assert.equal(gw.keygate.config.apis[0]!.introspection!.style, "keygate");
  });

  test("a valid key gets its id, account, application, environment, scopes, expiry and rate limit", async () => {
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const { id, key } = await gw.key({ environment: "test", scopes: ["orders.read", "orders.write"], expiresAt });
    const res = await whoami(key);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.equal(res.headers.get("x-ratelimit-limit"), "10");
    assert.equal(res.headers.get("x-ratelimit-remaining"), "9");
    const body = (await res.json()) as Record<string, unknown>;
    const reset = Number(res.headers.get("x-ratelimit-reset"));
    assert.equal(reset % 3600, 0);
    assert.deepEqual(Object.keys(body), ["valid", "keyId", "accountId", "applicationId", "environment", "scopes", "expiresAt", "ratelimit"]);
    assert.deepEqual(body, {
      valid: true,
      keyId: id,
      accountId: gw.accountId,
      applicationId: null,
      environment: "test",
      scopes: ["orders.read", "orders.write"],
      expiresAt,
      ratelimit: { limit: 10, remaining: 9, reset, window: 3600 },
    });
    assert.ok(!JSON.stringify(body).includes(key), "the key itself is never echoed");
  });

  test("a key of an application names it; a key that never expires has expiresAt null", async () => {
    const app = await gw.keygate.applications.create({ accountId: gw.accountId, api: "shop", name: "Back office", integrationType: "api", features: ["orders"] });
    const { id, key } = await gw.key({ applicationId: app.id });
    const body = (await (await whoami(key)).json()) as Record<string, unknown>;
    assert.equal(body.keyId, id);
    assert.equal(body.applicationId, app.id);
    assert.equal(body.environment, "live");
    assert.equal(body.expiresAt, null);
    assert.deepEqual(body.scopes, ["orders.read", "orders.write"]);
  });

  test("a missing or revoked key is denied in the API's error style, with no body of the key", async () => {
    const none = await whoami();
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("content-type"), "application/problem+json; charset=utf-8");
    assert.equal(((await none.json()) as { code: string }).code, "MISSING_CREDENTIALS");
    const { id, key } = await gw.key();
    await gw.keygate.keys.revoke(id);
    const revoked = await whoami(key);
    assert.equal(revoked.status, 401);
    const body = (await revoked.json()) as Record<string, unknown>;
    assert.equal(body.code, "REVOKED");
    assert.equal(body.valid, undefined);
  });
});
