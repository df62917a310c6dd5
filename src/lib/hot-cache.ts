/**
 * A bounded cache in two generations of `Map`, for lookups on the verification hot path.
 *
 * Hand-rolled rather than lru-cache because a hit here is one `Map.get`, where lru-cache's
 * `get` also moves the entry in its recency list: on a cached verification that bookkeeping
 * cost more than the SHA-256 of the key (bench/verify-inprocess.ts). Eviction is by
 * generation, not strictly least-recently-used: new entries go to the young map; when it
 * holds half the capacity it becomes the old map and the previous old map is dropped. An
 * old entry read again moves back to the young map, so an entry used at least once per
 * generation is never evicted. At most `max` entries are held (two when `max` is 1).
 *
 * @example
 * const cache = new HotCache<string, number>(1000);
 * cache.set("a", 1);
 * cache.get("a"); // 1
 */
export class HotCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly generation: number;

  constructor(max: number) {
    if (!(max >= 1)) throw new RangeError(`HotCache max must be at least 1, got ${max}`);
    this.generation = Math.max(1, Math.floor(max / 2));
  }

  get(key: K): V | undefined {
    const hit = this.young.get(key);
    if (hit !== undefined) return hit;
    const aged = this.old.get(key);
    if (aged !== undefined) {
      this.old.delete(key);
      this.put(key, aged);
    }
    return aged;
  }

  set(key: K, value: V): void {
    this.old.delete(key);
    this.put(key, value);
  }

  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }

  get size(): number {
    return this.young.size + this.old.size;
  }

  private put(key: K, value: V): void {
    if (this.young.size >= this.generation && !this.young.has(key)) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }
}
