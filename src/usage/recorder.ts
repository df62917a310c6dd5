import type { Store, UsageDelta } from "../store/types.js";

/**
 * Counts successful verifications per key in memory and writes them to the store in one
 * batch per interval, so a hot key costs no storage write per request. A failed flush keeps
 * its deltas for the next one: counts are never dropped. Memory is bounded by the number
 * of distinct keys used between two flushes.
 */
export interface UsageRecorder {
  record(keyId: string, now: number): void;
  /** What has not reached the store yet, so reads can add it. */
  pending(keyId: string): UsageDelta | undefined;
  flush(): Promise<void>;
  /** Keys with counts not yet written. */
  size(): number;
  /** Stops the timer and flushes what is left. */
  close(): Promise<void>;
}

export function createUsageRecorder(store: Store, intervalMs: number, onError: (e: unknown) => void): UsageRecorder {
  let deltas = new Map<string, UsageDelta>();
  let flushing: Promise<void> | null = null;

  const flushOnce = async (): Promise<void> => {
    if (deltas.size === 0) return;
    const batch = deltas;
    deltas = new Map();
    try {
      await store.recordUsage([...batch.values()]);
    } catch (e) {
      for (const d of batch.values()) {
        const cur = deltas.get(d.keyId);
        if (cur) { cur.count += d.count; cur.lastUsedAt = Math.max(cur.lastUsedAt, d.lastUsedAt); } else deltas.set(d.keyId, d);
      }
      throw e;
    }
  };

  const flush = async (): Promise<void> => {
    while (flushing) await flushing;
    flushing = flushOnce().finally(() => { flushing = null; });
    return flushing;
  };

  const timer = setInterval(() => { flush().catch(onError); }, intervalMs);
  timer.unref();

  return {
    record(keyId, now) {
      const d = deltas.get(keyId);
      if (d) { d.count++; if (now > d.lastUsedAt) d.lastUsedAt = now; } else deltas.set(keyId, { keyId, count: 1, lastUsedAt: now });
    },
    pending: (keyId) => deltas.get(keyId),
    size: () => deltas.size,
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
  };
}
