/**
 * How the facade records events: in-process key and JWT verifications, outages, bad input,
 * the HTTP announcement's lifetime, and live subscribers that misbehave.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeygate } from "../../src/keygate.js";
import type { UsageEvent, UsageEventView } from "../../src/analytics/index.js";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Store } from "../../src/store/types.js";

const CONFIG = {
  apis: [{
    id: "pay", keyFormat: { prefix: "pk" }, features: { payments: [] },
    tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] },
  }],
  cache: { changePollMs: 0 },
  usage: { flushIntervalMs: 600_000 },
  analytics: { flushIntervalMs: 600_000 },
};

async function setup(store: Store = createMemoryStore()) {
  const keygate = await createKeygate({ config: CONFIG, store, onBackgroundError: (e) => { throw e; } });
  const accountId = (await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
  const events: UsageEventView[] = [];
  keygate.analytics.subscribe({}, { event: (e) => events.push(e), end: () => {} });
  return { keygate, accountId, events };
}

describe("recording", () => {
  test("in-process key and JWT verifications are library events", async () => {
    const { keygate, accountId, events } = await setup();
    try {
      const app = await keygate.applications.create({ accountId, api: "pay", name: "Checkout" });
      const key = await keygate.keys.create({ api: "pay", accountId, applicationId: app.id });
      await keygate.verifyKey({ api: "pay", key: key.key, ip: "203.0.113.1" });
      const issued = await keygate.tokens.issue({ api: "pay", clientId: app.clientId, key: key.key });
      assert.ok(issued.ok);
      await keygate.tokens.verify({ api: "pay", token: issued.token });
      await keygate.tokens.verify({ api: "pay", token: `${issued.token}x` });
      assert.deepEqual(events.map((e) => [e.source, e.code, e.keyId, e.applicationId, e.status]), [
        ["library", "VALID", key.id, app.id, 200],
        ["library", "VALID", key.id, app.id, 200],
        ["library", "INVALID_TOKEN", null, null, 401],
      ]);
      assert.equal(events[0]!.ip, "203.0.113.1");
      for (const e of events) assert.ok(!JSON.stringify(e).includes(key.key));
    } finally {
      await keygate.close();
    }
  });

  test("an outage is recorded with its error code; bad input and unknown APIs are not", async () => {
    const inner = createMemoryStore();
    let down = false;
    const store: Store = Object.assign(Object.create(inner) as Store, {
      getKeyByHash: (hash: string) => (down ? Promise.reject(new KeygateError("STORE_UNAVAILABLE", "down", 503)) : inner.getKeyByHash(hash)),
    });
    const { keygate, accountId, events } = await setup(store);
    try {
      const key = await keygate.keys.create({ api: "pay", accountId });
      down = true;
      await assert.rejects(keygate.verifyKey({ api: "pay", key: key.key }), /down/);
      await assert.rejects(keygate.verifyKey({ api: "pay", key: key.key, ip: "not-an-ip" }), /INVALID_IP|not an IPv4/);
      await assert.rejects(keygate.verifyKey({ api: "nope", key: key.key }), /No API/);
      assert.deepEqual(events.map((e) => [e.code, e.status, e.api, e.keyId]), [["STORE_UNAVAILABLE", 503, "pay", null]]);
    } finally {
      await keygate.close();
    }
  });

  test("an HTTP front end's announcement applies to the verification started with it, and lapses after", async () => {
    const { keygate, accountId, events } = await setup();
    try {
      const key = await keygate.keys.create({ api: "pay", accountId });
      const attached: UsageEvent[] = [];
      keygate.analytics.expect({ attach: (e) => attached.push(e) });
      await keygate.verifyKey({ api: "pay", key: key.key });
      assert.equal(attached.length, 1, "handed to the front end…");
      assert.equal(events.length, 0, "…which records it when its response ends");

      keygate.analytics.expect({ attach: (e) => attached.push(e) });
      await Promise.resolve();
      await keygate.verifyKey({ api: "pay", key: key.key });
      assert.equal(attached.length, 1, "a lapsed announcement takes nothing");
      assert.equal(events.length, 1);
    } finally {
      await keygate.close();
    }
  });

  test("a live subscriber that throws is dropped and never fails a verification", async () => {
    const { keygate, accountId } = await setup();
    try {
      const key = await keygate.keys.create({ api: "pay", accountId });
      let ended = 0;
      keygate.analytics.subscribe({}, { event: () => { throw new Error("broken client"); }, end: () => { ended++; } });
      assert.equal(keygate.analytics.stats().subscribers, 2);
      assert.equal((await keygate.verifyKey({ api: "pay", key: key.key })).code, "VALID");
      assert.equal(keygate.analytics.stats().subscribers, 1);
      assert.equal(ended, 1);
      await keygate.flush();
      assert.equal((await keygate.analytics.logs({})).data.length, 1, "the event was recorded all the same");
    } finally {
      await keygate.close();
    }
  });
});
