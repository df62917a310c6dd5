import { BASE62, randomString, toBase62 } from "../keys/alphabet.js";
import type { Clock } from "../lib/clock.js";
import type { AnalyticsBatch, LatencyMetric, RequestLog, Store, UsageAggregate, UsageDimensions, UsagePeriod } from "../store/types.js";
import { toMicros } from "./events.js";
import type { UsageEvent } from "./events.js";
import { binOf } from "./histogram.js";

/** The `analytics` section of the config, every field filled. */
export interface AnalyticsSettings {
  flushIntervalMs: number;
  maxQueue: number;
  rawLogSampling: number;
  retentionDays: number;
  minuteRetentionDays: number;
  hourRetentionDays: number;
  /** 0 keeps day buckets forever. */
  dayRetentionDays: number;
  pruneIntervalMs: number;
  heartbeatSeconds: number;
}

export const ANALYTICS_DEFAULTS: Readonly<AnalyticsSettings> = {
  flushIntervalMs: 1000, maxQueue: 10_000, rawLogSampling: 1, retentionDays: 30,
  minuteRetentionDays: 7, hourRetentionDays: 90, dayRetentionDays: 0, pruneIntervalMs: 3_600_000, heartbeatSeconds: 15,
};

export const PERIOD_MS: Readonly<Record<UsagePeriod, number>> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const DAY_MS = PERIOD_MS.day;
/** Applied batch ids are remembered this long: far longer than any batch waits for its retry. */
const BATCH_ID_RETENTION_MS = 7 * DAY_MS;

/** What is held in memory and what was given up, for metrics and tests. */
export interface PipelineStats {
  /** Distinct (minute, key, code, metric, latency bin) counters not yet written. */
  pendingCounters: number;
  /** Raw logs waiting for the next flush (at most `maxQueue`). */
  queuedLogs: number;
  /** Raw logs not kept, by `rawLogSampling` or because the queue was full, since start. */
  sampledOut: number;
  /** Events recorded since start. */
  recorded: number;
  /** Whether a batch that failed to write waits for its retry. */
  retrying: boolean;
}

/**
 * The write side of analytics. `record` is synchronous and O(1): it adds one to an in-memory
 * counter per (minute, key, code, latency bin) and offers the event to a bounded raw-log queue.
 * A timer writes both as one batch per `flushIntervalMs`; minute counters are rolled up into
 * hour and day counters then, and the store adds them to what it has (upsert-add).
 *
 * Memory is bounded by distinct counters, never by requests: a flood of one key adds to the
 * same few counters. Raw logs beyond `maxQueue` per interval are reservoir-sampled, so what is
 * kept is a uniform sample of the interval, not just its start; counts are never sampled.
 * A batch that fails to write is retried as is, under the same id, which the store applies at
 * most once: a commit that succeeded without the acknowledgement arriving is not counted twice.
 */
export interface UsagePipeline {
  record(event: UsageEvent): void;
  flush(): Promise<void>;
  prune(): Promise<void>;
  stats(): PipelineStats;
  /** Stops the timers and writes what is left. */
  close(): Promise<void>;
}

export interface UsagePipelineOptions {
  store: Store;
  clock: Clock;
  settings: AnalyticsSettings;
  /** A failed background flush or prune; both retry on their own. */
  onError: (error: unknown) => void;
  /** For tests: run no timers; only explicit flush() and prune() write. */
  timers?: boolean;
}

/**
 * The counters of one (minute, api, key, code): events per latency bin. Nested maps keyed by
 * the verdict's own strings (whose hashes V8 caches) cost far less per event than one map
 * keyed by a freshly built string.
 */
interface Series extends UsageDimensions {
  minute: number;
  latency: Map<number, number>;
  upstream: Map<number, number> | null;
}

/** minute → api → key id ('' for none) → code → series. */
type Counters = Map<number, Map<string, Map<string, Map<string, Series>>>>;

const SEP = "\u0000";

export function createUsagePipeline(options: UsagePipelineOptions): UsagePipeline {
  const { store, clock, settings, onError } = options;
  let counters: Counters = new Map();
  /**
   * The series each key id ('' for none) last counted into, among `counters`: a key's events
   * mostly repeat its last minute, API and code, and then cost one lookup instead of four.
   */
  let lastSeries = new Map<string, Series>();
  let pendingCounters = 0;
  let logs: UsageEvent[] = [];
  /** Events offered to the raw-log queue since the last flush: the reservoir's `n`. */
  let offered = 0;
  let sampledOut = 0;
  let recorded = 0;
  let retry: AnalyticsBatch | null = null;
  let flushing: Promise<void> | null = null;
  const sampling = settings.rawLogSampling;

  const bump = (bins: Map<number, number>, ms: number): void => {
    const bin = binOf(ms);
    const n = bins.get(bin);
    if (n === undefined) { bins.set(bin, 1); pendingCounters++; } else bins.set(bin, n + 1);
  };

  const seriesOf = (minute: number, e: UsageEvent): Series => {
    let byApi = counters.get(minute);
    if (byApi === undefined) counters.set(minute, byApi = new Map());
    let byKey = byApi.get(e.api);
    if (byKey === undefined) byApi.set(e.api, byKey = new Map());
    let byCode = byKey.get(e.keyId ?? "");
    if (byCode === undefined) byKey.set(e.keyId ?? "", byCode = new Map());
    let series = byCode.get(e.code);
    if (series === undefined) {
      series = {
        api: e.api, keyId: e.keyId, accountId: e.accountId, applicationId: e.applicationId, environment: e.environment, code: e.code,
        minute, latency: new Map(), upstream: null,
      };
      byCode.set(e.code, series);
    }
    return series;
  };

  const count = (minute: number, e: UsageEvent): void => {
    const key = e.keyId ?? "";
    let series = lastSeries.get(key);
    if (series === undefined || series.minute !== minute || series.code !== e.code || series.api !== e.api) {
      series = seriesOf(minute, e);
      lastSeries.set(key, series);
    }
    bump(series.latency, e.latencyMs);
    if (e.upstreamMs !== null) bump(series.upstream ??= new Map(), e.upstreamMs);
  };

  const offer = (e: UsageEvent): void => {
    if (sampling < 1 && !(Math.random() < sampling)) { sampledOut++; return; }
    offered++;
    if (logs.length < settings.maxQueue) { logs.push(e); return; }
    // Reservoir sampling (Algorithm R): every event of the interval is kept with equal chance.
    sampledOut++;
    const j = Math.floor(Math.random() * offered);
    if (j < settings.maxQueue) logs[j] = e;
  };

  /** Swaps out what was gathered and turns it into one batch: minutes rolled up into hours and days. */
  const takeBatch = (): AnalyticsBatch => {
    const taken = counters;
    const events = logs;
    counters = new Map();
    lastSeries = new Map();
    pendingCounters = 0;
    logs = [];
    offered = 0;
    const rows = new Map<string, UsageAggregate>();
    const add = (period: UsagePeriod, minute: number, s: Series, metric: LatencyMetric, bin: number, count: number): void => {
      const start = minute - (minute % PERIOD_MS[period]);
      const id = [period, start, s.api, s.keyId ?? "", s.code, metric, bin].join(SEP);
      const cur = rows.get(id);
      if (cur) cur.count += count;
      else rows.set(id, { period, bucketStart: start, api: s.api, keyId: s.keyId, accountId: s.accountId, applicationId: s.applicationId, environment: s.environment, code: s.code, metric, bin, count });
    };
    for (const [minute, byApi] of taken) {
      for (const byKey of byApi.values()) {
        for (const byCode of byKey.values()) {
          for (const s of byCode.values()) {
            for (const period of ["minute", "hour", "day"] as const) {
              for (const [bin, n] of s.latency) add(period, minute, s, "latency", bin, n);
              if (s.upstream) for (const [bin, n] of s.upstream) add(period, minute, s, "upstream", bin, n);
            }
          }
        }
      }
    }
    const now = clock.now();
    // Unique without a random draw per log: one random tag per batch and a sequence number.
    const tag = randomString(BASE62, 10);
    const written: RequestLog[] = events.map((e, i) => ({
      id: `log_${toBase62(Math.max(0, e.at), 8)}${tag}${toBase62(i, 4)}`, at: e.at, api: e.api, keyId: e.keyId, accountId: e.accountId,
      applicationId: e.applicationId, environment: e.environment, code: e.code, status: e.status, method: e.method, path: e.path,
      latencyUs: toMicros(e.latencyMs), upstreamUs: e.upstreamMs === null ? null : toMicros(e.upstreamMs), ip: e.ip,
      requestId: e.requestId, source: e.source,
    }));
    return { id: `bat_${toBase62(now, 8)}${randomString(BASE62, 14)}`, at: now, aggregates: [...rows.values()], logs: written };
  };

  const flushOnce = async (): Promise<void> => {
    if (retry !== null) {
      await store.recordAnalytics(retry);
      retry = null;
    }
    if (pendingCounters === 0 && logs.length === 0) return;
    retry = takeBatch();
    await store.recordAnalytics(retry);
    retry = null;
  };

  const flush = async (): Promise<void> => {
    while (flushing) await flushing;
    flushing = flushOnce().finally(() => { flushing = null; });
    return flushing;
  };

  const prune = async (): Promise<void> => {
    const now = clock.now();
    await store.pruneAnalytics({
      logsBefore: now - settings.retentionDays * DAY_MS,
      minutesBefore: now - settings.minuteRetentionDays * DAY_MS,
      hoursBefore: now - settings.hourRetentionDays * DAY_MS,
      daysBefore: settings.dayRetentionDays === 0 ? null : now - settings.dayRetentionDays * DAY_MS,
      batchesBefore: now - BATCH_ID_RETENTION_MS,
    });
  };

  const timers: NodeJS.Timeout[] = [];
  if (options.timers !== false) {
    timers.push(setInterval(() => { flush().catch(onError); }, settings.flushIntervalMs));
    timers.push(setInterval(() => { prune().catch(onError); }, settings.pruneIntervalMs));
    for (const t of timers) t.unref();
  }

  return {
    record(e) {
      recorded++;
      count(e.at - (e.at % PERIOD_MS.minute), e);
      offer(e);
    },
    flush,
    prune,
    stats: () => ({ pendingCounters, queuedLogs: logs.length, sampledOut, recorded, retrying: retry !== null }),
    async close() {
      for (const t of timers) clearInterval(t);
      await flush();
    },
  };
}
