import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createUsageRecorder } from "../../src/usage/recorder.js";
import type { Store, UsageDelta } from "../../src/store/types.js";

/** A store that only takes usage: each write is held until the test settles it. */
function holdingStore(): { store: Store; writes: UsageDelta[][]; settle(ok: boolean): void } {
  const writes: UsageDelta[][] = [];
  let settleNext: ((ok: boolean) => void) | null = null;
  const store = {
    recordUsage: (batch: UsageDelta[]) => new Promise<void>((resolve, reject) => {
      writes.push(batch.map((d) => ({ ...d })));
      settleNext = (ok) => (ok ? resolve() : reject(new Error("store down")));
    }),
  } as unknown as Store;
  return { store, writes, settle: (ok) => { const s = settleNext!; settleNext = null; s(ok); } };
}

const byKey = (batch: UsageDelta[]): Record<string, [number, number]> =>
  Object.fromEntries(batch.map((d) => [d.keyId, [d.count, d.lastUsedAt]]));

describe("usage recorder", () => {
  test("counts each key's verifications exactly, flush after flush, as keys go idle and come back", async () => {
    const { store, writes, settle } = holdingStore();
    const usage = createUsageRecorder(store, 600_000, (e) => { throw e; });
    const want: Array<Record<string, [number, number]>> = [];
    let t = 1000;
    for (const round of [0, 1, 2, 3]) {
      const expected: Record<string, [number, number]> = {};
      // Keys 0–2 every round; key 3 only in rounds 0 and 2 (idle through a whole flush between).
      for (const k of round % 2 === 0 ? [0, 1, 2, 3] : [0, 1, 2]) {
        for (let n = 0; n <= k; n++) usage.record(`key_${k}`, ++t);
        expected[`key_${k}`] = [k + 1, t];
      }
      assert.equal(usage.size(), Object.keys(expected).length);
      assert.deepEqual(usage.pending("key_0"), { keyId: "key_0", count: 1, lastUsedAt: expected.key_0![1] });
      want.push(expected);
      const flushed = usage.flush();
      settle(true);
      await flushed;
      assert.equal(usage.size(), 0);
      assert.equal(usage.pending("key_0"), undefined, "nothing pending once written");
    }
    assert.deepEqual(writes.map(byKey), want);
    await usage.close();
  });

  test("a write that fails keeps its counts for the next one; counts made during a write go to the next", async () => {
    const { store, writes, settle } = holdingStore();
    const usage = createUsageRecorder(store, 600_000, () => {});
    usage.record("key_a", 10);
    usage.record("key_a", 20);
    usage.record("key_b", 15);
    const first = usage.flush();
    // Arrives while the first write is in flight: not in it, and not changing it.
    usage.record("key_a", 30);
    assert.deepEqual(usage.pending("key_a"), { keyId: "key_a", count: 1, lastUsedAt: 30 });
    settle(false);
    await assert.rejects(first, /store down/);
    assert.deepEqual(usage.pending("key_a"), { keyId: "key_a", count: 3, lastUsedAt: 30 });
    assert.equal(usage.size(), 2);
    const second = usage.flush();
    settle(true);
    await second;
    assert.deepEqual(writes.map(byKey), [{ key_a: [2, 20], key_b: [1, 15] }, { key_a: [3, 30], key_b: [1, 15] }]);
    const third = usage.flush();
    await third; // nothing pending: no write at all
    assert.equal(writes.length, 2);
    await usage.close();
  });
});
