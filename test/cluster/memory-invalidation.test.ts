/**
 * The in-memory invalidation bus: instances of one process sharing a store see each other's
 * revocations at once, without waiting for the change feed (turned off here).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createKeygate } from "../../src/keygate.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createMemoryInvalidationHub } from "../../src/cluster/invalidation.js";

const config = { apis: [{ id: "pay", keyFormat: { prefix: "pk" } }], cache: { changePollMs: 0 } };

test("a key revoked through one instance is refused by the other on its next verification", async () => {
  const store = createMemoryStore();
  const hub = createMemoryInvalidationHub();
  const a = await createKeygate({ config, store, invalidation: hub.node() });
  const b = await createKeygate({ config, store, invalidation: hub.node() });
  const isolated = await createKeygate({ config, store }); // no bus, no change feed
  try {
    const accountId = (await a.accounts.create({ name: "Acme", email: "ops@acme.test" })).id;
    const { id, key } = await a.keys.create({ api: "pay", accountId });
    for (const k of [a, b, isolated]) assert.equal((await k.verifyKey({ api: "pay", key })).code, "VALID"); // cached everywhere
    await a.keys.revoke(id);
    assert.equal((await b.verifyKey({ api: "pay", key })).code, "REVOKED");
    // Without a bus or the change feed, a cached key stays as it was: what the bus is for.
    assert.equal((await isolated.verifyKey({ api: "pay", key })).code, "VALID");
  } finally {
    await a.close();
    await b.close();
    await isolated.close();
  }
});

test("a closed node stops receiving; the others keep going", async () => {
  const hub = createMemoryInvalidationHub();
  const seen: string[][] = [[], []];
  const n1 = hub.node();
  const n2 = hub.node();
  await n1.subscribe((h) => seen[0]!.push(h));
  await n2.subscribe((h) => seen[1]!.push(h));
  await n1.publish(["h1"]);
  await n2.close();
  await n1.publish(["h2", "h3"]);
  assert.deepEqual(seen, [["h1", "h2", "h3"], ["h1"]]);
});
