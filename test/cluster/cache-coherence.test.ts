/**
 * The race between a node's cache fill and another node's change: a store read that started
 * before a key was revoked, and ends after the revocation's invalidation reached this node,
 * must not leave the old record cached. Two keygates share one store and an in-process bus;
 * the second one's store reads can be held at a gate, which makes the interleaving exact.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { KeyRecord, Store } from "../../src/store/types.js";
import { createMemoryInvalidationHub } from "../../src/cluster/invalidation.js";
import type { InvalidationBus } from "../../src/cluster/invalidation.js";

/** `store`, except that key reads, once they have their row, wait while `hold` is set. */
function gatedStore(store: Store): { store: Store; hold(): () => void; reading(): Promise<void> } {
  let gate: Promise<void> | null = null;
  let arrived: (() => void) | null = null;
  const held = <A extends unknown[]>(read: (...a: A) => Promise<KeyRecord | null>) => async (...args: A): Promise<KeyRecord | null> => {
    const row = await read(...args);
    if (gate) { arrived?.(); await gate; }
    return row;
  };
  const gated: Store = Object.assign(Object.create(store) as Store, {
    getKeyByHash: held(store.getKeyByHash.bind(store)),
    getKey: held(store.getKey.bind(store)),
  });
  let readArrived: Promise<void> = Promise.resolve();
  return {
    store: gated,
    hold() {
      let open!: () => void;
      gate = new Promise((resolve) => { open = resolve; });
      readArrived = new Promise((resolve) => { arrived = resolve; });
      return () => { gate = null; arrived = null; open(); };
    },
    reading: () => readArrived,
  };
}

describe("cache coherence between nodes", () => {
  const config = { apis: [{ id: "pay", keyFormat: { prefix: "ce" } }], cache: { changePollMs: 60_000 } };

  async function twoNodes(): Promise<{ n1: Keygate; n2: Keygate; gate: ReturnType<typeof gatedStore>; accountId: string }> {
    const shared = createMemoryStore();
    const hub = createMemoryInvalidationHub();
    const bus = (): InvalidationBus => hub.node();
    const gate = gatedStore(shared);
    const n1 = await createKeygate({ config, store: shared, invalidation: bus() });
    const n2 = await createKeygate({ config, store: gate.store, invalidation: bus() });
    const accountId = (await n1.accounts.create({ name: "Acme", email: "ops@acme.test" })).id;
    return { n1, n2, gate, accountId };
  }

  test("a key revoked while another node was reading it is not left valid in that node's cache", async () => {
    const { n1, n2, gate, accountId } = await twoNodes();
    try {
      const { id, key } = await n1.keys.create({ api: "pay", accountId });
      const release = gate.hold();
      const inFlight = n2.verifyKey({ api: "pay", key }); // has read the key, not yet cached it
      await gate.reading();
      await n1.keys.revoke(id); // committed and published while node2's read is under way
      release();
      // The verification that started before the revocation may still pass; none after it.
      assert.ok(["VALID", "REVOKED"].includes((await inFlight).code));
      assert.equal((await n2.verifyKey({ api: "pay", key })).code, "REVOKED");
    } finally {
      await n1.close();
      await n2.close();
    }
  });

  test("a key rotated while another node was reading it stops at once there too", async () => {
    const { n1, n2, gate, accountId } = await twoNodes();
    try {
      const { id, key } = await n1.keys.create({ api: "pay", accountId });
      const release = gate.hold();
      const inFlight = n2.verifyKey({ api: "pay", key });
      await gate.reading();
      const rotated = await n1.keys.rotate(id, { gracePeriodSeconds: 0 });
      release();
      await inFlight;
      assert.equal((await n2.verifyKey({ api: "pay", key })).code, "ROTATED");
      assert.equal((await n2.verifyKey({ api: "pay", key: rotated.key.key })).code, "VALID");
    } finally {
      await n1.close();
      await n2.close();
    }
  });
});
