/**
 * An in-process keygate for engine, limit and lockout tests: a memory store whose calls are
 * counted, a frozen clock, and the background timers turned off so that only the test moves
 * time and flushes usage.
 */
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { createManualClock } from "../../src/lib/clock.js";
import type { ManualClock } from "../../src/lib/clock.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Store } from "../../src/store/types.js";

/** A store that counts every call by method name; calls inside the store are not counted. */
export interface CountingStore {
  store: Store;
  count(method: keyof Store): number;
  /** Every call since the last reset, summed over methods. */
  total(): number;
  reset(): void;
}

export function countingStore(inner: Store): CountingStore {
  const calls = new Map<string, number>();
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    store,
    count: (method) => calls.get(method) ?? 0,
    total: () => [...calls.values()].reduce((a, b) => a + b, 0),
    reset: () => calls.clear(),
  };
}

/** 2026-01-01T00:00:00Z: an hour boundary, so every fixed window below starts at T0. */
export const T0 = Date.parse("2026-01-01T00:00:00Z");

export interface TestKeygate {
  keygate: Keygate;
  clock: ManualClock;
  calls: CountingStore;
  /** An account to own keys. */
  accountId: string;
}

/**
 * A keygate over a counting memory store and a clock frozen at `start`. `apis` and any other
 * top-level config fields are passed through; the change poll and the usage timer are off.
 */
export async function createTestKeygate(config: Record<string, unknown> & { apis: unknown[] }, start = T0): Promise<TestKeygate> {
  const clock = createManualClock(start);
  const calls = countingStore(createMemoryStore());
  const keygate = await createKeygate({
    config: {
      ...config,
      cache: { changePollMs: 0, maxKeys: 10_000, ...(config.cache as object | undefined) },
      usage: { flushIntervalMs: 600_000, ...(config.usage as object | undefined) },
    },
    store: calls.store,
    clock,
  });
  const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
  calls.reset();
  return { keygate, clock, calls, accountId: account.id };
}
