/**
 * HotCache, the verifier's key and account cache: bounded, and an entry read at least once
 * per generation is never evicted.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { HotCache } from "../../src/lib/hot-cache.js";

describe("HotCache", () => {
  test("holds at most max entries, however many are set", () => {
    const cache = new HotCache<number, number>(100);
    for (let i = 0; i < 10_000; i++) {
      cache.set(i, i);
      assert.ok(cache.size <= 100, `size ${cache.size} after ${i + 1} sets`);
    }
    assert.equal(cache.get(9_999), 9_999, "the newest entry is kept");
    assert.equal(cache.get(0), undefined, "the oldest is gone");
  });

  test("an entry read once per generation survives any number of new entries", () => {
    const cache = new HotCache<string, string>(10);
    cache.set("hot", "kept");
    for (let i = 0; i < 1_000; i++) {
      cache.set(`cold-${i}`, "x");
      if (i % 4 === 0) assert.equal(cache.get("hot"), "kept", `lost after ${i + 1} other entries`);
    }
    assert.ok(cache.size <= 10);
  });

  test("an entry not read while the cache turns over twice is evicted", () => {
    const cache = new HotCache<string, number>(4);
    cache.set("idle", 1);
    for (let i = 0; i < 4; i++) cache.set(`n${i}`, i);
    assert.equal(cache.get("idle"), undefined);
  });

  test("set replaces, delete and clear remove from both generations", () => {
    const cache = new HotCache<string, number>(4);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("c", 3); // "a" and "b" are now the old generation
    cache.set("a", 10);
    assert.equal(cache.get("a"), 10);
    cache.delete("b");
    assert.equal(cache.get("b"), undefined);
    assert.equal(cache.size, 2);
    cache.clear();
    assert.equal(cache.size, 0);
    assert.equal(cache.get("c"), undefined);
  });

  test("a max below 1 is refused", () => {
    assert.throws(() => new HotCache(0), RangeError);
  });
});
