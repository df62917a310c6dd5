/**
 * The memory store's off-heap key table (src/store/memory/key-table.ts): the parts the store's
 * conformance suite does not reach with a handful of keys — indexes that grow and rehash,
 * arenas of several chunks, evacuation of half-dead chunks, records larger than half a chunk,
 * records that cannot be encoded, non-ASCII ids, and a long random run checked against a
 * plain Map — and the memory store's change feed in typed arrays, with account changes among
 * key changes, growing past its first arrays and pruned in steps.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { KeyTable } from "../../src/store/memory/key-table.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Account, KeyRecord } from "../../src/store/types.js";

let serial = 0;
function record(over: Partial<KeyRecord> = {}): KeyRecord {
  const n = String(++serial).padStart(10, "0");
  return {
    id: `key_${n}`, api: "pay", accountId: "acc_1", applicationId: null, name: null, environment: "live",
    hash: `${n}${"ab".repeat(27)}`, hashAlgorithm: "sha256", start: null, scopes: ["read"], ipAllowlist: [],
    expiresAt: null, rateLimit: null, enabled: true, revokedAt: null, rotatedAt: null, graceEndsAt: null, replacedBy: null,
    metadata: {}, source: "generated", createdAt: 1_700_000_000_000, updatedAt: 1_700_000_000_000, lastUsedAt: null, usageCount: 0, ...over,
  };
}

describe("memory store: the off-heap key table", () => {
  test("20,000 keys in a table that starts with room for 1,024: each is found by id and by hash, unknown ones are not", () => {
    const table = new KeyTable(64 * 1024);
    const records = Array.from({ length: 20_000 }, (_, i) => record({ accountId: `acc_${i % 7}`, name: i % 3 === 0 ? `key ${i}` : null }));
    for (let i = 0; i < records.length; i += 1_000) table.insert(records.slice(i, i + 1_000));
    assert.equal(table.size, 20_000);
    for (const r of records) {
      assert.deepEqual(table.get(table.slotOfId(r.id)), r);
      assert.equal(table.slotOfHash(r.hash), table.slotOfId(r.id));
    }
    assert.ok(table.memory.chunks > 1, `${table.memory.chunks} chunk(s) of 64 KB for 20,000 keys`);
    assert.equal(table.slotOfId("key_none"), -1);
    assert.equal(table.slotOfHash("f".repeat(64)), -1);
    assert.equal(table.slotOfId(""), -1);
    // A prefix or an extension of a stored id is another id.
    assert.equal(table.slotOfId(records[5]!.id.slice(0, -1)), -1);
    assert.equal(table.slotOfId(`${records[5]!.id}0`), -1);
  });

  test("updates leave dead bytes that evacuating half-dead chunks reclaims, and every record reads back as last written", () => {
    const table = new KeyTable(4096);
    const records = Array.from({ length: 50 }, () => record());
    table.insert(records);
    const latest = [...records];
    let peakChunks = 0;
    for (let round = 0; round < 200; round++) {
      for (let i = 0; i < latest.length; i++) {
        latest[i] = { ...latest[i]!, name: `round ${round}`, metadata: { round, pad: "x".repeat(round % 40) }, updatedAt: 1_700_000_000_000 + round };
        table.replace(table.slotOfId(latest[i]!.id), latest[i]!);
      }
      peakChunks = Math.max(peakChunks, table.memory.chunks);
    }
    for (const r of latest) assert.deepEqual(table.get(table.slotOfHash(r.hash)), r);
    const { live, dead, chunks } = table.memory;
    // 200 rounds wrote some 50 × 200 × 300 bytes (~3 MB): without reclaiming, ~700 chunks.
    // Every chunk but the one being filled is less than half dead: at most twice the live bytes, plus that one.
    assert.ok(peakChunks * 4096 <= 2 * live + 3 * 4096, `at most ${peakChunks} chunks of 4 KB held at once for ${live} live bytes`);
    assert.ok(dead <= live + 4096, `${dead} dead bytes against ${live} live`);
    assert.ok(chunks * 4096 <= 2 * live + 2 * 4096, `${chunks} chunks for ${live} live bytes`);
  });

  test("one record updated again and again: the chunk it fills is left mostly dead, evacuated, and freed", () => {
    const table = new KeyTable(4096);
    let r = record({ metadata: { pad: "q".repeat(200) } });
    table.insert([r]);
    for (let i = 0; i < 100; i++) {
      r = { ...r, name: `version ${i}`, updatedAt: i };
      table.replace(0, r);
      assert.deepEqual(table.get(0), r);
    }
    const { chunks, live, dead } = table.memory;
    assert.equal(chunks, 1, "each chunk the record filled with its versions was freed once left");
    assert.ok(live < 500 && dead < 4096, `${live} live, ${dead} dead bytes`);
  });

  test("a record larger than half a chunk gets a chunk of its own, freed when the record is replaced", () => {
    const table = new KeyTable(4096);
    const small = record();
    const huge = record({ metadata: { blob: "y".repeat(20_000), nested: { list: [1, "two", null] } } });
    const half = record({ metadata: { blob: "z".repeat(2_500) } });
    const next = record();
    table.insert([small, huge, half, next]);
    for (const r of [small, huge, half, next]) assert.deepEqual(table.get(table.slotOfId(r.id)), r);
    assert.equal(table.memory.chunks, 3, "one chunk for the small records, one each for the two large ones");
    table.replace(table.slotOfId(huge.id), { ...huge, metadata: {} });
    table.replace(table.slotOfId(half.id), { ...half, metadata: {} });
    assert.deepEqual(table.get(table.slotOfId(huge.id)).metadata, {});
    assert.deepEqual(table.get(table.slotOfId(half.id)).metadata, {});
    assert.equal(table.memory.chunks, 1, "the large records' chunks are freed");
    for (const r of [small, next]) assert.deepEqual(table.get(table.slotOfId(r.id)), r);
  });

  test("a record that cannot be encoded stores nothing, in a batch or as an update, and the table stays whole", () => {
    const table = new KeyTable(4096);
    const first = record();
    table.insert([first]);
    const before = table.memory;
    const good = record();
    const bad = record({ metadata: { n: 10n } as unknown as Record<string, unknown> });
    assert.throws(() => table.insert([good, bad]), TypeError);
    assert.equal(table.size, 1);
    assert.equal(table.slotOfId(good.id), -1);
    assert.equal(table.slotOfHash(good.hash), -1);
    assert.throws(() => table.replace(0, { ...first, metadata: bad.metadata }), TypeError);
    assert.deepEqual(table.get(0), first);
    assert.deepEqual(table.memory, before);
    assert.deepEqual(table.list({ limit: 10 }), [first]);
    table.insert([good]);
    assert.deepEqual(table.list({ limit: 10 }), [first, good]);
  });

  for (const chunkBytes of [1024, 4096]) test(`a long random run of inserts, updates and usage, records of every size, agrees with a plain Map (${chunkBytes}-byte chunks)`, () => {
    let seed = chunkBytes;
    const random = (): number => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);
    const pad = (): string => "p".repeat(Math.floor(random() ** 3 * 6_000)); // mostly small, some over half a chunk, a few over a chunk
    const table = new KeyTable(chunkBytes);
    const model = new Map<string, KeyRecord>();
    const ids: string[] = [];
    for (let step = 0; step < 6_000; step++) {
      const roll = random();
      if (roll < 0.3 || ids.length === 0) {
        const batch = Array.from({ length: 1 + Math.floor(random() * 4) }, () => record({ metadata: { pad: pad() } }));
        table.insert(batch);
        for (const r of batch) { model.set(r.id, r); ids.push(r.id); }
      } else if (roll < 0.9) {
        const id = ids[Math.floor(random() * ids.length)]!;
        const next = { ...model.get(id)!, name: `s${step}`, metadata: { pad: pad() }, updatedAt: step };
        table.replace(table.slotOfId(id), next);
        model.set(id, next);
      } else {
        const id = ids[Math.floor(random() * ids.length)]!;
        table.addUsage(table.slotOfId(id), 3, step);
        const r = model.get(id)!;
        model.set(id, { ...r, usageCount: r.usageCount + 3, lastUsedAt: Math.max(r.lastUsedAt ?? 0, step) });
      }
      if (step % 500 === 0) {
        const { live, dead } = table.memory;
        assert.ok(dead <= live + chunkBytes, `step ${step}: ${dead} dead bytes for ${live} live`);
        for (const [id, r] of model) assert.deepEqual(table.get(table.slotOfId(id)), r, `step ${step}`);
      }
    }
    assert.equal(table.size, model.size);
    for (const [id, r] of model) {
      assert.deepEqual(table.get(table.slotOfId(id)), r);
      assert.equal(table.slotOfHash(r.hash), table.slotOfId(id));
    }
    assert.deepEqual(table.list({ limit: model.size }).map((r) => r.id), [...model.keys()].sort());
  });

  test("a chunk size that is not a whole number of at least 1,024 bytes is refused", () => {
    for (const bad of [0, 100, 1023, 4096.5, Number.NaN]) assert.throws(() => new KeyTable(bad), RangeError, String(bad));
    assert.equal(new KeyTable(1024).size, 0);
  });

  test("ids, hashes and names outside ASCII round-trip and are found", () => {
    const table = new KeyTable();
    const r = record({ id: "key_ключ_🔑", hash: "hash_é_\u0000_end", name: "Ünïcode — ключ", accountId: "acc_ü", environment: "prodüction" });
    table.insert([r]);
    assert.deepEqual(table.get(table.slotOfId(r.id)), r);
    assert.equal(table.slotOfHash(r.hash), 0);
    // Same bytes read as Latin-1 would be another string.
    assert.equal(table.slotOfId(Buffer.from(r.id, "utf8").toString("latin1")), -1);
    assert.equal(table.hashOf(0), r.hash);
  });

  test("usage adds up in its columns: counts exactly past 2^32, the last use never moves back", () => {
    const table = new KeyTable();
    const r = record({ usageCount: 2 ** 40 });
    table.insert([r]);
    const slot = table.slotOfId(r.id);
    table.addUsage(slot, 5, 2000);
    table.addUsage(slot, 1, 1000);
    assert.equal(table.get(slot).usageCount, 2 ** 40 + 6);
    assert.equal(table.get(slot).lastUsedAt, 2000);
    // A rewrite of the record (an update) keeps the counts it is given.
    table.replace(slot, { ...table.get(slot), name: "renamed" });
    assert.equal(table.get(slot).usageCount, 2 ** 40 + 6);
    assert.equal(table.get(slot).lastUsedAt, 2000);
  });

  test("list filters on its columns, orders by id and pages; a name never stored matches nothing", () => {
    const table = new KeyTable();
    const records = [
      record({ api: "mail", accountId: "acc_2" }), record({ applicationId: "app_1" }), record({ accountId: "acc_2" }), record(),
    ];
    table.insert([records[3]!, records[1]!, records[0]!, records[2]!]); // not in id order
    const ids = (rows: KeyRecord[]): number[] => rows.map((r) => records.findIndex((x) => x.id === r.id));
    assert.deepEqual(ids(table.list({ limit: 10 })), [0, 1, 2, 3]);
    assert.deepEqual(ids(table.list({ api: "pay", limit: 10 })), [1, 2, 3]);
    assert.deepEqual(ids(table.list({ accountId: "acc_2", limit: 10 })), [0, 2]);
    assert.deepEqual(ids(table.list({ applicationId: "app_1", limit: 10 })), [1]);
    assert.deepEqual(ids(table.list({ api: "pay", after: records[1]!.id, limit: 1 })), [2]);
    assert.deepEqual(table.list({ api: "none", limit: 10 }), []);
    assert.deepEqual(table.list({ applicationId: "app_none", limit: 10 }), []);
  });
});

describe("memory store: the change feed in typed arrays", () => {
  test("key and account changes interleaved, past the first 1,024 places, read in pages and pruned in steps", async () => {
    const store = createMemoryStore();
    await store.createAccount({ id: "acc_1", name: "Acme", email: "ops@acme.test", metadata: {}, ipAllowlists: {}, createdAt: 1, updatedAt: 1 } as Account);
    const start = (await store.keyChangesSince(null, 1)).cursor;
    const expected: string[] = [];
    const times: number[] = [];
    const keys: KeyRecord[] = [];
    for (let i = 0; i < 3_000; i++) {
      const at = 1_000 + i;
      if (i % 10 === 9) {
        await store.updateAccount("acc_1", { name: `Acme ${i}` }, at);
        expected.push("acc_1");
      } else if (i % 10 === 8) {
        const k = keys[keys.length - 1]!;
        await store.updateKey(k.id, { name: `n${i}` }, at);
        expected.push(k.hash);
      } else {
        const k = record({ createdAt: at, updatedAt: at });
        keys.push(k);
        await store.insertKeys([k]);
        expected.push(k.hash);
      }
      times.push(at);
    }
    const read = async (from: number, page: number): Promise<{ hashes: string[]; complete: boolean; cursor: number }> => {
      const hashes: string[] = [];
      let cursor = from;
      for (;;) {
        const next = await store.keyChangesSince(cursor, page);
        if (!next.complete) return { hashes, complete: false, cursor: next.cursor };
        if (next.hashes.length === 0) return { hashes, complete: true, cursor };
        hashes.push(...next.hashes);
        cursor = next.cursor;
      }
    };
    assert.deepEqual((await read(start, 333)).hashes, expected);

    // Prune in steps: each cursor at or after the first change kept reads exactly the rest.
    for (const cut of [500, 1_200, 1_201, 2_600, 3_999]) {
      await store.pruneKeyChanges(cut);
      const kept = times.findIndex((t) => t >= cut);
      const from = start + kept; // the cursor just before the first change kept
      const rest = await read(from, 250);
      assert.equal(rest.complete, true, `after pruning before ${cut}`);
      assert.deepEqual(rest.hashes, expected.slice(kept), `after pruning before ${cut}`);
      if (kept > 0) assert.equal((await store.keyChangesSince(from - 1, 10)).complete, false);
    }
    // Changes after pruning are numbered on from where the feed was.
    const k = record({ createdAt: 9_999, updatedAt: 9_999 });
    await store.insertKeys([k]);
    assert.deepEqual(await store.keyChangesSince(start + 3_000, 10), { cursor: start + 3_001, hashes: [k.hash], complete: true });
  });
});
