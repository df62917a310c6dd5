import { KeygateError, notFound } from "../lib/errors.js";
import type { Clock } from "../lib/clock.js";
import type { RateLimiter } from "../limits/types.js";
import type { Store, UsageDelta, UsageFilter, UsageGroupBy, UsagePeriod, UsageQueryRow } from "../store/types.js";
import type { ApiRuntime } from "../verify/engine.js";
import { logView } from "./events.js";
import type { RequestLogView } from "./events.js";
import { addToHistogram, summarize } from "./histogram.js";
import type { Histogram } from "./histogram.js";
import { PERIOD_MS } from "../store/aggregates.js";

/**
 * Restricts a query to one account, for callers that may see only their own data (the
 * portal). It is ANDed into every filter, and a lookup by id of another account's row finds
 * nothing, exactly as if the id did not exist.
 */
export interface AnalyticsScope {
  accountId?: string | undefined;
}

export interface AnalyticsQuery extends UsageFilter {
  interval: UsagePeriod;
  /** Epoch ms; rounded down to the interval. Default: `to` minus 60 minutes, 24 hours or 30 days. */
  from?: number | undefined;
  /** Epoch ms, exclusive; rounded up to the interval. Default: the end of the current bucket. */
  to?: number | undefined;
  /** Omitted or null: one group over everything that matches. */
  groupBy?: UsageGroupBy | null | undefined;
  /** The busiest groups first, at most this many (1–1000, default 100). */
  limit?: number | undefined;
}

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface UsageStats {
  count: number;
  /** Verifications with verdict VALID. */
  successes: number;
  errors: number;
  /** successes / count; null without requests. */
  successRate: number | null;
  errorsByCode: Record<string, number>;
  /** keygate's latency, ms, each within ±4.5 % (see histogram.ts). */
  latencyMs: Percentiles | null;
  /** The upstream's latency (gateway), ms; null when there was none. */
  upstreamMs: Percentiles | null;
}

export interface UsageSeriesPoint extends UsageStats {
  /** The bucket's start, ISO 8601. */
  start: string;
}

export interface UsageGroup {
  /** The key, application, account or api id; null for "none" (e.g. requests with an unknown key) or without grouping. */
  group: string | null;
  total: UsageStats;
  /** Buckets with requests, oldest first; empty buckets are left out. */
  series: UsageSeriesPoint[];
}

export interface AnalyticsResult {
  interval: UsagePeriod;
  groupBy: UsageGroupBy | null;
  from: string;
  to: string;
  data: UsageGroup[];
}

export interface LogQuery extends UsageFilter {
  from?: number | undefined;
  to?: number | undefined;
  status?: number | undefined;
  /** `nextCursor` of the previous page. */
  cursor?: string | undefined;
  /** 1–1000, default 50. */
  limit?: number | undefined;
}

export interface LogPage {
  data: RequestLogView[];
  nextCursor: string | null;
}

/** A key's live rate-limit state and its lifetime usage. */
export interface KeyUsage {
  keyId: string;
  api: string;
  accountId: string;
  /** The limit that applies (the key's own, else its environment's or API's); null when none does. */
  rateLimit: {
    limit: number;
    windowSeconds: number;
    /** Requests admitted in the current window. */
    used: number;
    remaining: number;
    /** End of the current window, ISO 8601. */
    resetAt: string;
  } | null;
  usageCount: number;
  lastUsedAt: string | null;
}

/** Buckets one query may span: 50 hours of minutes, ~4 months of hours, ~8 years of days. */
export const MAX_BUCKETS = 3000;
/** Grouped rows one query may read before it is refused as too large. */
export const MAX_QUERY_ROWS = 200_000;
const DEFAULT_BUCKETS: Readonly<Record<UsagePeriod, number>> = { minute: 60, hour: 24, day: 30 };
export const LOG_CURSOR = /^log_[0-9A-Za-z]{8,60}$/;

export interface AnalyticsQueries {
  query(q: AnalyticsQuery, scope?: AnalyticsScope): Promise<AnalyticsResult>;
  logs(q: LogQuery, scope?: AnalyticsScope): Promise<LogPage>;
  log(id: string, scope?: AnalyticsScope): Promise<RequestLogView>;
  keyUsage(keyId: string, scope?: AnalyticsScope): Promise<KeyUsage>;
}

export interface AnalyticsQueryPorts {
  store: Store;
  clock: Clock;
  limiter: RateLimiter;
  apis: ReadonlyMap<string, ApiRuntime>;
  /** Usage counted but not yet written (the usage recorder's). */
  pendingUsage?: ((keyId: string) => UsageDelta | undefined) | undefined;
}

/** The filter with the scope ANDed in; null when the two can match nothing. */
function scoped<F extends UsageFilter>(filter: F, scope: AnalyticsScope | undefined): F | null {
  if (scope?.accountId === undefined) return filter;
  if (filter.accountId !== undefined && filter.accountId !== scope.accountId) return null;
  return { ...filter, accountId: scope.accountId };
}

const filterOf = (q: UsageFilter): UsageFilter => ({
  api: q.api, keyId: q.keyId, accountId: q.accountId, applicationId: q.applicationId, environment: q.environment, code: q.code,
});

const limitOf = (value: number | undefined, fallback: number, max: number, field: string): number => {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) throw new KeygateError("INVALID_REQUEST", `${field}: expected an integer from 1 to ${max}.`, 400, { field });
  return value;
};

const timeOf = (value: number | undefined, field: string): number | undefined => {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < 0) throw new KeygateError("INVALID_REQUEST", `${field}: expected a date-time.`, 400, { field });
  return value;
};

/** Counts and histograms of one group or bucket while rows are added. */
class Accumulator {
  count = 0;
  successes = 0;
  readonly errors = new Map<string, number>();
  readonly latency: Histogram = new Map();
  readonly upstream: Histogram = new Map();

  add(row: UsageQueryRow): void {
    if (row.metric === "upstream") { addToHistogram(this.upstream, row.bin, row.count); return; }
    this.count += row.count;
    if (row.code === "VALID") this.successes += row.count;
    else this.errors.set(row.code, (this.errors.get(row.code) ?? 0) + row.count);
    addToHistogram(this.latency, row.bin, row.count);
  }

  stats(): UsageStats {
    const errorsByCode: Record<string, number> = {};
    for (const code of [...this.errors.keys()].sort()) errorsByCode[code] = this.errors.get(code)!;
    return {
      count: this.count, successes: this.successes, errors: this.count - this.successes,
      successRate: this.count === 0 ? null : this.successes / this.count, errorsByCode,
      latencyMs: summarize(this.latency), upstreamMs: summarize(this.upstream),
    };
  }
}

/**
 * The read side of analytics: usage aggregates, raw logs and a key's live rate-limit state.
 * Every function takes an optional {@link AnalyticsScope}.
 */
export function createAnalyticsQueries(ports: AnalyticsQueryPorts): AnalyticsQueries {
  const { store, clock, limiter, apis } = ports;

  return {
    async query(q, scope) {
      const size = PERIOD_MS[q.interval];
      if (size === undefined) throw new KeygateError("INVALID_REQUEST", "interval: expected minute, hour or day.", 400, { field: "interval" });
      const groupBy = q.groupBy ?? null;
      const limit = limitOf(q.limit, 100, 1000, "limit");
      const toGiven = timeOf(q.to, "to");
      const fromGiven = timeOf(q.from, "from");
      const to = Math.ceil((toGiven ?? clock.now() + 1) / size) * size;
      const from = Math.floor((fromGiven ?? to - DEFAULT_BUCKETS[q.interval] * size) / size) * size;
      if (from >= to) {
        throw new KeygateError("INVALID_TIME_RANGE", `from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()}).`, 400, { field: "from" });
      }
      if ((to - from) / size > MAX_BUCKETS) {
        throw new KeygateError("RANGE_TOO_LARGE", `The range spans ${(to - from) / size} ${q.interval} buckets; at most ${MAX_BUCKETS} fit one query. Use a coarser interval or a shorter range.`, 400, { field: "from", maxBuckets: MAX_BUCKETS });
      }
      const result: AnalyticsResult = { interval: q.interval, groupBy, from: new Date(from).toISOString(), to: new Date(to).toISOString(), data: [] };
      const filter = scoped(filterOf(q), scope);
      if (filter === null) return result;
      const rows = await store.queryUsage({ ...filter, period: q.interval, from, to, groupBy, limit: MAX_QUERY_ROWS + 1 });
      if (rows.length > MAX_QUERY_ROWS) {
        throw new KeygateError("QUERY_TOO_LARGE", "The query matches too much data to aggregate at once; narrow the range, use a coarser interval or add filters.", 400);
      }
      const groups = new Map<string | null, { total: Accumulator; buckets: Map<number, Accumulator> }>();
      for (const row of rows) {
        let g = groups.get(row.group);
        if (!g) groups.set(row.group, g = { total: new Accumulator(), buckets: new Map() });
        g.total.add(row);
        let b = g.buckets.get(row.bucketStart);
        if (!b) g.buckets.set(row.bucketStart, b = new Accumulator());
        b.add(row);
      }
      result.data = [...groups.entries()]
        .map(([group, g]) => ({
          group,
          total: g.total.stats(),
          series: [...g.buckets.entries()].sort(([a], [b]) => a - b).map(([start, acc]) => ({ start: new Date(start).toISOString(), ...acc.stats() })),
        }))
        .sort((a, b) => b.total.count - a.total.count || ((a.group ?? "") < (b.group ?? "") ? -1 : 1))
        .slice(0, limit);
      return result;
    },

    async logs(q, scope) {
      const limit = limitOf(q.limit, 50, 1000, "limit");
      if (q.cursor !== undefined && !LOG_CURSOR.test(q.cursor)) {
        throw new KeygateError("INVALID_CURSOR", "cursor: pass the nextCursor of a previous page unchanged.", 400, { field: "cursor" });
      }
      const from = timeOf(q.from, "from");
      const to = timeOf(q.to, "to");
      if (from !== undefined && to !== undefined && from >= to) {
        throw new KeygateError("INVALID_TIME_RANGE", `from (${new Date(from).toISOString()}) must be before to (${new Date(to).toISOString()}).`, 400, { field: "from" });
      }
      const filter = scoped(filterOf(q), scope);
      if (filter === null) return { data: [], nextCursor: null };
      const rows = await store.listRequestLogs({ ...filter, from, to, status: q.status, before: q.cursor, limit: limit + 1 });
      const page = rows.slice(0, limit);
      return { data: page.map(logView), nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
    },

    async log(id, scope) {
      const row = await store.getRequestLog(id);
      if (!row || (scope?.accountId !== undefined && row.accountId !== scope.accountId)) throw notFound("log", id);
      return logView(row);
    },

    async keyUsage(keyId, scope) {
      const key = await store.getKey(keyId);
      if (!key || (scope?.accountId !== undefined && key.accountId !== scope.accountId)) throw notFound("key", keyId);
      const api = apis.get(key.api);
      const limit = key.rateLimit ?? api?.rateLimitFor(key.environment) ?? null;
      let rateLimit: KeyUsage["rateLimit"] = null;
      if (limit) {
        // The same limiter id and window as the verifier's consume, read without consuming.
        const v = await limiter.peek(key.id, limit.limit, limit.windowSeconds * 1000, clock.now());
        rateLimit = {
          limit: v.limit, windowSeconds: limit.windowSeconds, used: Math.max(0, v.limit - v.remaining), remaining: v.remaining,
          resetAt: new Date(v.resetAt).toISOString(),
        };
      }
      const pending = ports.pendingUsage?.(key.id);
      const lastUsed = pending ? Math.max(pending.lastUsedAt, key.lastUsedAt ?? 0) : key.lastUsedAt;
      return {
        keyId: key.id, api: key.api, accountId: key.accountId, rateLimit,
        usageCount: key.usageCount + (pending?.count ?? 0), lastUsedAt: lastUsed === null ? null : new Date(lastUsed).toISOString(),
      };
    },
  };
}
