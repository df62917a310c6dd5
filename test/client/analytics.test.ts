/**
 * keygate/client's analytics, logs, key-usage and secret-pattern calls against a real keygate
 * service over HTTP, each answer checked against the response schema /openapi.json gives for
 * it. The service flushes analytics only when told (`keygate.flush()`), so counts are exact.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeygateClient, KeygateApiError } from "../../src/client/index.js";
import type { KeygateClient } from "../../src/client/index.js";
import { ROOT_KEY, responseChecker, startService } from "./support.js";
import type { Service } from "./support.js";

let service: Service;
let kg: KeygateClient;
let check: ReturnType<typeof responseChecker>;
let accountId: string;

before(async () => {
  service = await startService();
  check = responseChecker(service.document);
  kg = createKeygateClient({ baseUrl: service.url, rootKey: ROOT_KEY });
  accountId = (await kg.accounts.create({ name: "Analytics", email: "analytics@client.test" })).id;
});
after(async () => { await service?.close(); });

describe("keys.usage", () => {
  test("answers the key's live rate-limit window without consuming from it", async () => {
    const { id, key } = await kg.keys.create({ api: "pay", accountId, rateLimit: { limit: 5, windowSeconds: 60 } });
    for (let i = 0; i < 2; i++) assert.equal((await kg.keys.verify({ api: "pay", key })).valid, true);
    const usage = check("GET /v1/keys/{id}/usage", 200, await kg.keys.usage(id));
    assert.equal(usage.keyId, id);
    assert.equal(usage.accountId, accountId);
    assert.deepEqual({ limit: usage.rateLimit?.limit, used: usage.rateLimit?.used, remaining: usage.rateLimit?.remaining }, { limit: 5, used: 2, remaining: 3 });
    // Reading did not take a request: the next verification still sees 3 left before it.
    assert.equal((await kg.keys.usage(id)).rateLimit?.remaining, 3);
    assert.equal((await kg.keys.verify({ api: "pay", key })).ratelimit?.remaining, 2);
  });

  test("an unknown key is 404 KEY_NOT_FOUND", async () => {
    await assert.rejects(kg.keys.usage("key_doesnotexist0000"), (e) => e instanceof KeygateApiError && e.status === 404 && e.code === "KEY_NOT_FOUND");
  });
});

describe("analytics and logs", () => {
  let keyId: string;

  before(async () => {
    const created = await kg.keys.create({ api: "pay", accountId, scopes: ["charges.read"] });
    keyId = created.id;
    await kg.keys.verify({ api: "pay", key: created.key, scopes: ["charges.read"] });
    await kg.keys.verify({ api: "pay", key: created.key, scopes: ["charges.read"] });
    await kg.keys.verify({ api: "pay", key: created.key, scopes: ["charges.write"] });
    await service.keygate.flush();
  });

  test("analytics.query counts every verification of a key, by outcome", async () => {
    const result = check("GET /v1/analytics", 200, await kg.analytics.query({ keyId, interval: "minute", groupBy: "key" }));
    assert.equal(result.interval, "minute");
    assert.equal(result.data.length, 1);
    const [series] = result.data;
    assert.equal(series!.group, keyId);
    assert.equal(series!.total.count, 3);
    assert.equal(series!.total.successes, 2);
    assert.deepEqual(series!.total.errorsByCode, { INSUFFICIENT_SCOPE: 1 });
  });

  test("an invalid query is 400 INVALID_REQUEST", async () => {
    await assert.rejects(kg.analytics.query({ from: "yesterday" }), (e) => e instanceof KeygateApiError && e.status === 400 && e.code === "INVALID_REQUEST");
  });

  test("logs.list answers pages newest first, filters by status, and iterates across pages; logs.get answers one", async () => {
    const page = check("GET /v1/logs", 200, await kg.logs.list({ keyId, limit: 2 }));
    assert.equal(page.data.length, 2);
    assert.notEqual(page.nextCursor, null);
    assert.equal(page.data[0]!.code, "INSUFFICIENT_SCOPE"); // the last verification comes first
    const all = [];
    for await (const log of kg.logs.list({ keyId, limit: 2 })) all.push(log);
    assert.deepEqual(all.map((l) => l.code), ["INSUFFICIENT_SCOPE", "VALID", "VALID"]);
    assert.ok(all.every((l) => l.keyId === keyId && l.source === "verify" && /^log_/.test(l.id)));

    const denied = await kg.logs.list({ keyId, status: 403 });
    assert.deepEqual(denied.data.map((l) => l.code), ["INSUFFICIENT_SCOPE"]);

    assert.deepEqual(check("GET /v1/logs/{id}", 200, await kg.logs.get(all[1]!.id)), all[1]);
    await assert.rejects(kg.logs.get("log_doesnotexist00"), (e) => e instanceof KeygateApiError && e.status === 404 && e.code === "LOG_NOT_FOUND");
  });
});

describe("apis.secretPattern", () => {
  test("answers a pattern whose regex finds the API's keys in text", async () => {
    const pattern = check("GET /v1/apis/{id}/secret-pattern", 200, await kg.apis.secretPattern("pay"));
    assert.equal(pattern.api, "pay");
    assert.equal(pattern.checksum, true);
    const { key } = await kg.keys.create({ api: "pay", accountId });
    const found = `const token = "${key}";`.match(new RegExp(pattern.regex));
    assert.equal(found?.[0], key);
  });

  test("an unknown API is 404 API_NOT_FOUND", async () => {
    await assert.rejects(kg.apis.secretPattern("nope"), (e) => e instanceof KeygateApiError && e.status === 404 && e.code === "API_NOT_FOUND");
  });
});
