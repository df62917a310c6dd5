import { createRequire } from "node:module";
import type { Registry } from "prom-client";
import type { Store } from "../store/types.js";
import type { VerifyObserver } from "../verify/engine.js";

/**
 * keygate's Prometheus metrics, exposed at `/metrics`. Labels are bounded: API ids and
 * verdict codes come from the config and the code list, never from requests.
 */
export interface KeygateMetrics {
  registry: Registry;
  observer: VerifyObserver;
  /** Wraps a store so every call's latency lands in `keygate_store_duration_seconds`. */
  instrumentStore(store: Store): Store;
  /** Reports the usage batch waiting to be written. */
  setUsageQueueDepth(read: () => number): void;
}

const SECONDS = [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/**
 * @example
 * const metrics = createMetrics();
 * const keygate = await createKeygate({ config, store: metrics.instrumentStore(store), metrics });
 * // GET /metrics → await metrics.registry.metrics()
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}): KeygateMetrics {
  // Loaded here rather than imported: `import "keygate"` re-exports this factory, and an
  // application without metrics should not pay for loading prom-client.
  const { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } = createRequire(import.meta.url)("prom-client") as typeof import("prom-client");
  const registry = new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "keygate_" });
  const verifications = new Counter({ name: "keygate_verifications_total", help: "Verifications by API and verdict code.", labelNames: ["api", "code"] as const, registers: [registry] });
  const duration = new Histogram({ name: "keygate_verification_duration_seconds", help: "Time to reach a verdict.", labelNames: ["api"] as const, buckets: SECONDS, registers: [registry] });
  const cache = new Counter({ name: "keygate_cache_lookups_total", help: "Key cache lookups: hit, negative (known unknown) or miss.", labelNames: ["result"] as const, registers: [registry] });
  const limiter = new Histogram({ name: "keygate_limiter_duration_seconds", help: "Rate-limit (and lockout) round trip per verification.", buckets: SECONDS, registers: [registry] });
  const store = new Histogram({ name: "keygate_store_duration_seconds", help: "Store call latency by operation.", labelNames: ["op"] as const, buckets: SECONDS, registers: [registry] });
  const errors = new Counter({ name: "keygate_store_errors_total", help: "Store calls that threw, by operation.", labelNames: ["op"] as const, registers: [registry] });
  let usageDepth: () => number = () => 0;
  new Gauge({ name: "keygate_usage_queue_depth", help: "Keys with usage counts not yet written to the store.", registers: [registry], collect() { this.set(usageDepth()); } });

  return {
    registry,
    observer: {
      verdict: (api, code, ms) => { verifications.inc({ api, code }); duration.observe({ api }, ms / 1000); },
      cache: (result) => cache.inc({ result }),
      limiter: (ms) => limiter.observe(ms / 1000),
    },
    instrumentStore(target) {
      const wrapped: Record<string, unknown> = {};
      for (const key of Object.keys(target) as (keyof Store)[]) {
        const fn = target[key];
        if (typeof fn !== "function") { wrapped[key] = fn; continue; }
        wrapped[key] = async (...args: unknown[]) => {
          const end = store.startTimer({ op: key });
          try {
            return await (fn as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          } catch (e) {
            errors.inc({ op: key });
            throw e;
          } finally {
            end();
          }
        };
      }
      return wrapped as unknown as Store;
    },
    setUsageQueueDepth(read) { usageDepth = read; },
  };
}
