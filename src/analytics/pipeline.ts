import { setImmediate as nextTurn } from "node:timers/promises";
import { BASE62, randomString, toBase62 } from "../keys/alphabet.js";
import type { Clock } from "../lib/clock.js";
import { PERIOD_MS } from "../store/aggregates.js";
import type { AnalyticsBatch, LatencyMetric, RequestLog, Store, UsageCounters, UsageDimensions } from "../store/types.js";
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

const DAY_MS = PERIOD_MS.day;
/**
 * Bins counted per batch: the counters of one flush with many keys in use are written as
 * several batches, each a transaction of its own with its own id, the event loop let through
 * between two. SQLite adds each bin to its row on the event loop, some 5 µs a row: with 10,000
 * keys in use, one batch of ~60,000 held it for ~300 ms every second (scratch harness); one of
 * 5,000 holds it for some 25 ms.
 */
export const BATCH_MAX_BINS = 5000;
/** Applied batch ids are remembered this long: far longer than any batch waits for its retry. */
const BATCH_ID_RETENTION_MS = 7 * DAY_MS;

/** What is held in memory and what was given up, for metrics and tests. */
export interface PipelineStats {
  /** Distinct (minute, key, code, metric, latency bin) counters not yet written. */
  pendingCounters: number;
  /** Counter series held: one per (API, key, code) counted since the flush before last. */
  series: number;
  /** Raw logs waiting for the next flush (at most `maxQueue`). */
  queuedLogs: number;
  /** Raw logs not kept, by `rawLogSampling` or because the queue was full, since start. */
  sampledOut: number;
  /** Events recorded since start. */
  recorded: number;
  /** Whether batches that failed to write wait for their retry. */
  retrying: boolean;
}

/**
 * The write side of analytics. `record` is synchronous and O(1): it adds one to an in-memory
 * counter per (minute, key, code, latency bin) and offers the event to a bounded raw-log queue.
 * A timer writes both every `flushIntervalMs`: the minute counters, one object per (minute, key,
 * code, metric), which the store adds to its minute rows, and to hour and day rows at once or
 * (the SQL stores) once the minute has passed (upsert-add).
 *
 * Memory is bounded by distinct counters, never by requests: a flood of one key adds to the
 * same few counters. Raw logs beyond `maxQueue` per interval are reservoir-sampled, so what is
 * kept is a uniform sample of the interval, not just its start; counts are never sampled.
 * A batch that fails to write is retried as is, under the same id, which the store applies at
 * most once: a commit that succeeded without the acknowledgement arriving is not counted twice.
 * A flush's counters are written in batches of at most BATCH_MAX_BINS bins, in order; after a
 * failure, the next flush resumes with the batch that failed.
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
 * Counts per latency bin, as [bin, count] pairs in the first `used` pairs of `pairs`. A series
 * sees one or a few bins per interval, so a linear scan finds its bin sooner than a hash, and
 * emptying it is setting `used` to 0: the array is reused, flush after flush.
 */
class Bins {
  used = 0;
  readonly pairs: number[] = [];

  /** Adds one to `bin`; true when that bin was not counted yet. */
  add(bin: number): boolean {
    const pairs = this.pairs;
    const end = 2 * this.used;
    for (let i = 0; i < end; i += 2) {
      if (pairs[i] === bin) { pairs[i + 1]!++; return false; }
    }
    pairs[end] = bin;
    pairs[end + 1] = 1;
    this.used++;
    return true;
  }

  /** A copy holding the same counts, and this one emptied. */
  takeCopy(): Bins {
    const copy = new Bins();
    for (let i = 0; i < 2 * this.used; i++) copy.pairs.push(this.pairs[i]!);
    copy.used = this.used;
    this.used = 0;
    return copy;
  }
}

/**
 * The counters of one (api, key, code) in its current minute. A series outlives the flushes
 * that empty it, for as long as its key is in use: what one key's traffic costs between two
 * flushes is additions to counters it already has, not new objects. Rebuilt every flush (a
 * new series, maps and memo per key per second), they lived a second each, long enough to be
 * promoted to the old generation, which only a full mark frees: with 10,000 keys in use,
 * bench/verify-scale.ts measured ~20% more CPU per verification and GC pauses taking 11–18% of
 * the time (2–6% without counting at all), and rounds ±50% apart.
 */
interface Series extends UsageDimensions {
  minute: number;
  latency: Bins;
  upstream: Bins | null;
  /** The flush generation it last counted in: one idle for a whole interval is let go. */
  generation: number;
  /**
   * Counts of earlier minutes not yet written: what the series held when its minute moved on,
   * and events recorded late for an earlier minute (a slow response ends after the minute it
   * was verified in). Emptied by each flush.
   */
  past: Map<number, Series> | null;
}

/** key id ('' for none) → api → code → series. */
type Counters = Map<string, Map<string, Map<string, Series>>>;

const hasCounts = (s: Series): boolean => s.latency.used > 0 || (s.upstream !== null && s.upstream.used > 0);

/**
 * The raw logs waiting for the next flush, one column per field instead of one array of
 * events. Kept events wait up to `flushIntervalMs` (a second by default): long enough for V8
 * to promote each one, with its fields, to the old generation, which only a full mark frees.
 * In columns, an event dies young as soon as its request is answered, and what is kept is
 * numbers in typed arrays plus references to strings, most of them shared (the API, key,
 * account and code come from the key record and the verdict). Measured under the gateway
 * benchmark's keyed route (20,000 req/s, `--trace-gc-nvp`, bytes promoted by scavenges per
 * request): 558 with an array of events, ~350–380 with columns (most of the rest is the
 * memory store's own copies of the newest logs), 168 keeping no logs at all; time in GC
 * pauses 2.9–3.4 → 2.6–2.8 µs per request.
 *
 * The columns grow (doubling) up to `capacity`, and give half their room back after a flush
 * that used less than a quarter of it; `take` copies out what they hold and drops their
 * references to strings, so nothing outlives its flush.
 */
class LogColumns {
  size = 0;
  private room = 0;
  private at = new Float64Array(0);
  private latencyMs = new Float64Array(0);
  /** -1 for none. */
  private upstreamMs = new Float64Array(0);
  private status = new Float64Array(0);
  private readonly api: string[] = [];
  private readonly keyId: (string | null)[] = [];
  private readonly accountId: (string | null)[] = [];
  private readonly applicationId: (string | null)[] = [];
  private readonly environment: (string | null)[] = [];
  private readonly code: string[] = [];
  private readonly method: (string | null)[] = [];
  private readonly path: (string | null)[] = [];
  private readonly ip: (string | null)[] = [];
  private readonly requestId: (string | null)[] = [];
  private readonly source: string[] = [];

  constructor(private readonly capacity: number) {}

  private strings(): Array<Array<string | null>> {
    return [this.api, this.keyId, this.accountId, this.applicationId, this.environment, this.code, this.method, this.path, this.ip, this.requestId, this.source];
  }

  /** Appends (i = size) or, once full, replaces the log in slot i. */
  put(i: number, e: UsageEvent): void {
    if (i === this.size) {
      if (i === this.room) this.grow();
      this.size++;
    }
    this.at[i] = e.at;
    this.latencyMs[i] = e.latencyMs;
    this.upstreamMs[i] = e.upstreamMs === null ? -1 : Math.max(0, e.upstreamMs);
    this.status[i] = e.status;
    this.api[i] = e.api;
    this.keyId[i] = e.keyId;
    this.accountId[i] = e.accountId;
    this.applicationId[i] = e.applicationId;
    this.environment[i] = e.environment;
    this.code[i] = e.code;
    this.method[i] = e.method;
    this.path[i] = e.path;
    this.ip[i] = e.ip;
    this.requestId[i] = e.requestId;
    this.source[i] = e.source;
  }

  /** Every log held, as the store writes them (ids from `tag` and the slot), and empties the columns. */
  take(tag: string): RequestLog[] {
    const n = this.size;
    const out: RequestLog[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const at = this.at[i]!;
      const upstream = this.upstreamMs[i]!;
      out[i] = {
        id: `log_${toBase62(Math.max(0, at), 8)}${tag}${toBase62(i, 4)}`, at, api: this.api[i]!, keyId: this.keyId[i]!,
        accountId: this.accountId[i]!, applicationId: this.applicationId[i]!, environment: this.environment[i]!, code: this.code[i]!,
        status: this.status[i]!, method: this.method[i]!, path: this.path[i]!, latencyUs: toMicros(this.latencyMs[i]!),
        upstreamUs: upstream < 0 ? null : toMicros(upstream), ip: this.ip[i]!, requestId: this.requestId[i]!, source: this.source[i]!,
      };
    }
    for (const column of this.strings()) column.fill(null, 0, n);
    this.size = 0;
    if (4 * n < this.room && this.room > 64) this.shrink();
    return out;
  }

  private grow(): void {
    this.resize(Math.min(this.capacity, Math.max(64, this.room * 2)));
  }

  /** Half the room, for columns that a burst grew and a quieter interval used a quarter of. */
  private shrink(): void {
    this.resize(Math.max(64, this.room >> 1));
    for (const column of this.strings()) if (column.length > this.room) column.length = this.room;
  }

  /** New number columns of `room` slots, holding the `size` logs held. */
  private resize(room: number): void {
    this.room = room;
    const moved = (old: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const next = new Float64Array(room);
      next.set(old.subarray(0, this.size));
      return next;
    };
    this.at = moved(this.at);
    this.latencyMs = moved(this.latencyMs);
    this.upstreamMs = moved(this.upstreamMs);
    this.status = moved(this.status);
  }
}

export function createUsagePipeline(options: UsagePipelineOptions): UsagePipeline {
  const { store, clock, settings, onError } = options;
  const counters: Counters = new Map();
  /**
   * The series each key id ('' for none) last counted into: a key's events mostly repeat its
   * last API and code, and then cost one lookup instead of three.
   */
  const lastSeries = new Map<string, Series>();
  /** Flushes taken so far. */
  let generation = 0;
  let pendingCounters = 0;
  let seriesHeld = 0;
  const logs = new LogColumns(settings.maxQueue);
  /** Events offered to the raw-log queue since the last flush: the reservoir's `n`. */
  let offered = 0;
  let sampledOut = 0;
  let recorded = 0;
  /** Batches taken and not written yet: those of the flush in progress, or left by one that failed. */
  let unwritten: AnalyticsBatch[] = [];
  let flushing: Promise<void> | null = null;
  const sampling = settings.rawLogSampling;

  const seriesOf = (key: string, e: UsageEvent): Series => {
    let byApi = counters.get(key);
    if (byApi === undefined) counters.set(key, byApi = new Map());
    let byCode = byApi.get(e.api);
    if (byCode === undefined) byApi.set(e.api, byCode = new Map());
    let series = byCode.get(e.code);
    if (series === undefined) {
      series = {
        api: e.api, keyId: e.keyId, accountId: e.accountId, applicationId: e.applicationId, environment: e.environment, code: e.code,
        minute: -1, latency: new Bins(), upstream: null, generation, past: null,
      };
      byCode.set(e.code, series);
      seriesHeld++;
    }
    return series;
  };

  /** A series's dimensions are its first event's in each minute, as the minute's aggregate rows have one set. */
  const takeDimensions = (series: Series, e: UsageEvent): void => {
    series.accountId = e.accountId;
    series.applicationId = e.applicationId;
    series.environment = e.environment;
  };

  /**
   * The series that counts `e`, of minute `minute`: `series` itself, moved on to that minute
   * when it is later than its own (what it held set aside in `past`), or, for an event recorded
   * late for an earlier minute, that minute's entry in `past`. Memory stays bounded by distinct
   * (minute, key, code) counters, however late events interleave with current ones.
   */
  const forMinute = (series: Series, minute: number, e: UsageEvent): Series => {
    if (!hasCounts(series)) {
      series.minute = minute;
      takeDimensions(series, e);
      return series;
    }
    const past = series.past ??= new Map();
    if (minute > series.minute) {
      // `past` holds no entry for series.minute yet: between two flushes a series with counts
      // only moves forward, and late events file under minutes before its own.
      past.set(series.minute, { ...series, latency: series.latency.takeCopy(), upstream: series.upstream?.takeCopy() ?? null, past: null });
      series.minute = minute;
      takeDimensions(series, e);
      return series;
    }
    let earlier = past.get(minute);
    if (earlier === undefined) {
      earlier = { ...series, minute, latency: new Bins(), upstream: null, past: null };
      takeDimensions(earlier, e);
      past.set(minute, earlier);
    }
    return earlier;
  };

  const count = (minute: number, e: UsageEvent): void => {
    const key = e.keyId ?? "";
    let series = lastSeries.get(key);
    if (series === undefined || series.code !== e.code || series.api !== e.api) {
      series = seriesOf(key, e);
      lastSeries.set(key, series);
    }
    series.generation = generation;
    const into = series.minute === minute ? series : forMinute(series, minute, e);
    if (into.latency.add(binOf(e.latencyMs))) pendingCounters++;
    if (e.upstreamMs !== null && (into.upstream ??= new Bins()).add(binOf(e.upstreamMs))) pendingCounters++;
  };

  const offer = (e: UsageEvent): void => {
    if (sampling < 1 && !(Math.random() < sampling)) { sampledOut++; return; }
    offered++;
    if (logs.size < settings.maxQueue) { logs.put(logs.size, e); return; }
    // Reservoir sampling (Algorithm R): every event of the interval is kept with equal chance.
    sampledOut++;
    const j = Math.floor(Math.random() * offered);
    if (j < settings.maxQueue) logs.put(j, e);
  };

  /**
   * Ends an interval: hands every series held to `visit` (to be emptied), lets go of those idle
   * through the whole interval, and starts the next.
   */
  const turnOver = (visit: (s: Series) => void): void => {
    for (const [key, byApi] of counters) {
      for (const [api, byCode] of byApi) {
        for (const [code, s] of byCode) {
          visit(s);
          if (s.generation < generation) {
            byCode.delete(code);
            seriesHeld--;
            if (lastSeries.get(key) === s) lastSeries.delete(key);
          }
        }
        if (byCode.size === 0) byApi.delete(api);
      }
      if (byApi.size === 0) counters.delete(key);
    }
    generation++;
  };

  /**
   * Swaps out what was gathered and turns it into batches: the counters of each series and
   * minute, at most BATCH_MAX_BINS bins per batch (one counters object is never split, so a
   * batch may hold more when one object does), the raw logs with the first.
   */
  const takeBatches = (): AnalyticsBatch[] => {
    pendingCounters = 0;
    offered = 0;
    const counters: UsageCounters[] = [];
    const emit = (s: Series, metric: LatencyMetric, bins: Bins): void => {
      if (bins.used === 0) return;
      counters.push({
        api: s.api, keyId: s.keyId, accountId: s.accountId, applicationId: s.applicationId, environment: s.environment, code: s.code,
        minute: s.minute, metric, bins: bins.pairs.slice(0, 2 * bins.used),
      });
      bins.used = 0;
    };
    const take = (s: Series): void => {
      emit(s, "latency", s.latency);
      if (s.upstream !== null) emit(s, "upstream", s.upstream);
    };
    turnOver((s) => {
      take(s);
      if (s.past !== null) {
        for (const earlier of s.past.values()) take(earlier);
        s.past = null;
      }
    });
    const now = clock.now();
    // Unique without a random draw per log: one random tag per flush and a sequence number.
    const written = logs.take(randomString(BASE62, 10));
    const tag = `bat_${toBase62(now, 8)}${randomString(BASE62, 12)}`;
    const batches: AnalyticsBatch[] = [];
    let start = 0;
    let bins = 0;
    const cut = (end: number): void => {
      batches.push({ id: `${tag}${toBase62(batches.length, 2)}`, at: now, counters: counters.slice(start, end), logs: batches.length === 0 ? written : [] });
      start = end;
      bins = 0;
    };
    for (let i = 0; i < counters.length; i++) {
      const n = counters[i]!.bins.length / 2;
      if (bins > 0 && bins + n > BATCH_MAX_BINS) cut(i);
      bins += n;
    }
    cut(counters.length);
    return batches;
  };

  /** Writes the batches not written yet, in order, the event loop let through between two; a failure leaves the rest. */
  const writeUnwritten = async (): Promise<void> => {
    while (unwritten.length > 0) {
      await store.recordAnalytics(unwritten[0]!);
      unwritten.shift();
      if (unwritten.length > 0) await nextTurn();
    }
  };

  const flushOnce = async (): Promise<void> => {
    await writeUnwritten();
    if (pendingCounters === 0 && logs.size === 0) {
      // Nothing to write; an interval has still passed, and series idle through it are let go.
      if (seriesHeld > 0) turnOver(() => {});
      return;
    }
    unwritten = takeBatches();
    await writeUnwritten();
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
    stats: () => ({ pendingCounters, series: seriesHeld, queuedLogs: logs.size, sampledOut, recorded, retrying: flushing === null && unwritten.length > 0 }),
    async close() {
      for (const t of timers) clearInterval(t);
      await flush();
    },
  };
}
