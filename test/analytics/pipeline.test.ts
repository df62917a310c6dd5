import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BATCH_MAX_BINS, createUsagePipeline, ANALYTICS_DEFAULTS } from "../../src/analytics/pipeline.js";
import type { AnalyticsSettings } from "../../src/analytics/pipeline.js";
import type { UsageEvent } from "../../src/analytics/events.js";
import { createAnalyticsQueries } from "../../src/analytics/query.js";
import { binOf } from "../../src/analytics/histogram.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createMemoryRateLimiter } from "../../src/limits/memory/index.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { KeygateError } from "../../src/lib/errors.js";
import type { AnalyticsBatch, Store, UsagePeriod } from "../../src/store/types.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");
const MIN = 60_000;

const unexpected = (e: unknown): void => { throw e; };
const settings = (over: Partial<AnalyticsSettings> = {}): AnalyticsSettings => ({ ...ANALYTICS_DEFAULTS, ...over });

function event(i: number, over: Partial<UsageEvent> = {}): UsageEvent {
  const key = i % 2 === 0 ? "key_a" : "key_b";
  return {
    at: T0 + i, api: "pay", keyId: key, accountId: key === "key_a" ? "acc_1" : "acc_2", applicationId: null, environment: "live",
    code: i % 10 === 0 ? "RATE_LIMITED" : "VALID", status: i % 10 === 0 ? 429 : 200, method: "GET", path: "/v1/balance",
    latencyMs: 0.05 + (i % 7) * 0.3, upstreamMs: null, ip: "203.0.113.45", requestId: `req_${i}`, source: "gateway", ...over,
  };
}

/** Totals per key and code of one period, read back through the query API. */
async function totals(store: Store, interval: UsagePeriod, from = T0 - 86_400_000, to = T0 + 86_400_000): Promise<Record<string, number>> {
  const queries = createAnalyticsQueries({ store, clock: createManualClock(T0), limiter: createMemoryRateLimiter(), apis: new Map() });
  const result = await queries.query({ interval, groupBy: "key", from, to });
  const out: Record<string, number> = {};
  for (const g of result.data) {
    out[`${g.group}:VALID`] = g.total.successes;
    for (const [code, n] of Object.entries(g.total.errorsByCode)) out[`${g.group}:${code}`] = n;
  }
  return out;
}

/** What the events should add up to. */
function expected(events: UsageEvent[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of events) out[`${e.keyId}:${e.code}`] = (out[`${e.keyId}:${e.code}`] ?? 0) + 1;
  return out;
}

describe("usage pipeline", () => {
  test("a flood is counted exactly at every period while raw logs are reservoir-sampled to maxQueue", async () => {
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings({ maxQueue: 500 }), onError: unexpected, timers: false });
    const events: UsageEvent[] = [];
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      // Spread over three minutes (and so over their hour and day).
      const e = event(i, { at: T0 + Math.floor((i / N) * 3 * MIN) });
      events.push(e);
      pipeline.record({ ...e });
    }
    const held = pipeline.stats();
    assert.equal(held.queuedLogs, 500, "raw logs bounded by maxQueue");
    assert.equal(held.sampledOut, N - 500);
    assert.ok(held.pendingCounters <= 3 * 2 * 2 * 7, `counters bounded by distinct (minute, key, code, bin): ${held.pendingCounters}`);
    await pipeline.flush();

    const want = expected(events);
    for (const period of ["minute", "hour", "day"] as const) assert.deepEqual(await totals(store, period), want, period);
    const logs = await store.listRequestLogs({ limit: 10_000 });
    assert.equal(logs.length, 500);
    // A uniform sample of the interval, not its first 500 events.
    assert.ok(logs.some((l) => l.at >= T0 + 2.7 * MIN), "the sample reaches the end of the flood");
    assert.equal(new Set(logs.map((l) => l.id)).size, 500);
    assert.deepEqual(pipeline.stats(), { pendingCounters: 0, series: 3, queuedLogs: 0, sampledOut: N - 500, recorded: N, retrying: false });
  });

  test("raw logs are written field for field as recorded, flush after flush", async () => {
    // The queue holds logs column by column; its columns grow past their first size, and are
    // emptied and reused by each flush.
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings({ maxQueue: 1000 }), onError: unexpected, timers: false });
    const recorded: UsageEvent[] = [];
    for (const [round, count] of [[0, 150], [1, 3], [2, 70]] as const) {
      for (let i = 0; i < count; i++) {
        const bare = i % 3 === 0;
        const e = event(round * 1000 + i, {
          keyId: bare ? null : `key_${round}_${i}`, accountId: bare ? null : `acc_${i}`, applicationId: i % 5 === 0 ? `app_${i}` : null,
          environment: bare ? null : "test", method: bare ? null : "POST", path: bare ? null : `/v1/things/${round}/${i}`,
          ip: bare ? null : `198.51.100.${i % 250}`, requestId: bare ? null : `req_${round}_${i}`, source: bare ? "library" : "gateway",
          upstreamMs: i % 2 === 0 ? null : 1.2345 + i, latencyMs: 0.001 * i, status: 200 + (i % 3),
        });
        recorded.push(e);
        pipeline.record({ ...e });
      }
      assert.equal(pipeline.stats().queuedLogs, count);
      await pipeline.flush();
      assert.equal(pipeline.stats().queuedLogs, 0);
    }
    const logs = await store.listRequestLogs({ limit: 1000 });
    assert.equal(logs.length, recorded.length);
    const sortKey = (l: { at: number; requestId: string | null; path: string | null }): string => `${l.at}|${l.requestId}|${l.path}`;
    assert.deepEqual(
      logs.map(({ id: _id, ...rest }) => rest).sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
      recorded.map((e) => ({
        at: e.at, api: e.api, keyId: e.keyId, accountId: e.accountId, applicationId: e.applicationId, environment: e.environment,
        code: e.code, status: e.status, method: e.method, path: e.path, latencyUs: Math.round(e.latencyMs * 1000),
        upstreamUs: e.upstreamMs === null ? null : Math.round(e.upstreamMs * 1000), ip: e.ip, requestId: e.requestId, source: e.source,
      })).sort((a, b) => sortKey(a).localeCompare(sortKey(b))),
    );
    assert.equal(new Set(logs.map((l) => l.id)).size, recorded.length, "every log its own id");
  });

  test("events of one key id interleaved over minutes, APIs and codes land in their own minute, API and code", async () => {
    // Failures without a key share the key id '' across APIs: the pipeline's memo of each
    // key's last series must not carry one API's, minute's or code's count into another's.
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings(), onError: unexpected, timers: false });
    const want = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const api = i % 3 === 0 ? "mail" : "pay";
      const minute = Math.floor(i / 7) % 4;
      const code = i % 5 === 0 ? "NOT_FOUND" : "MISSING_CREDENTIALS";
      pipeline.record(event(i, { at: T0 + minute * MIN + (i % 50), api, keyId: null, accountId: null, code, status: 401 }));
      const k = `${api}|${minute}|${code}`;
      want.set(k, (want.get(k) ?? 0) + 1);
    }
    await pipeline.flush();
    const queries = createAnalyticsQueries({ store, clock: createManualClock(T0), limiter: createMemoryRateLimiter(), apis: new Map() });
    const result = await queries.query({ interval: "minute", groupBy: "api", from: T0, to: T0 + 10 * MIN });
    const got = new Map<string, number>();
    for (const g of result.data) {
      for (const point of g.series) {
        const minute = (Date.parse(point.start) - T0) / MIN;
        for (const [code, n] of Object.entries(point.errorsByCode)) got.set(`${g.group}|${minute}|${code}`, n);
      }
    }
    assert.deepEqual(new Map([...got].sort()), new Map([...want].sort()));
  });

  test("a negative upstream time is logged as 0, as its counter bins it, and a status as given", async () => {
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings(), onError: unexpected, timers: false });
    pipeline.record(event(1, { upstreamMs: -5, status: 499 }));
    pipeline.record(event(2, { upstreamMs: null, status: 200 }));
    await pipeline.flush();
    const logs = await store.listRequestLogs({ limit: 10 });
    assert.deepEqual(logs.map((l) => [l.requestId, l.upstreamUs, l.status]).sort(), [["req_1", 0, 499], ["req_2", null, 200]]);
  });

  test("counters kept from flush to flush stay exact per minute, bin and metric, as keys go idle and come back", async () => {
    // A series outlives the flush that empties it while its key is in use, and is let go after
    // a whole interval without events; neither may lose, repeat or misfile a count.
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings(), onError: unexpected, timers: false });
    const want = new Map<string, number>();
    const note = (period: UsagePeriod, e: UsageEvent, metric: string, ms: number): void => {
      const start = e.at - (e.at % { minute: MIN, hour: 60 * MIN, day: 1440 * MIN }[period]);
      const k = `${period}|${start}|${e.keyId}|${e.code}|${metric}|${binOf(ms)}`;
      want.set(k, (want.get(k) ?? 0) + 1);
    };
    let i = 0;
    for (const round of [0, 1, 2, 3]) {
      /** The round's distinct minute counters: what the pipeline may hold, however events interleave. */
      const distinct = new Set<string>();
      // Keys 0–19 in every round; 20–39 only in rounds 0 and 2 (idle through a whole flush between).
      for (let n = 0; n < 2000; n++, i++) {
        const k = round % 2 === 1 ? n % 20 : n % 40;
        // Minutes out of order, as late responses record them.
        const minute = round + (n % 3 === 0 ? 1 : 0);
        const e = event(i, { at: T0 + minute * MIN + (n % 1000), keyId: `key_${k}`, accountId: `acc_${k % 4}`, upstreamMs: n % 4 === 0 ? 0.5 + (n % 9) : null });
        pipeline.record({ ...e });
        for (const period of ["minute", "hour", "day"] as const) {
          note(period, e, "latency", e.latencyMs);
          if (e.upstreamMs !== null) note(period, e, "upstream", e.upstreamMs);
        }
        distinct.add(`${minute}|${e.keyId}|${e.code}|latency|${binOf(e.latencyMs)}`);
        if (e.upstreamMs !== null) distinct.add(`${minute}|${e.keyId}|${e.code}|upstream|${binOf(e.upstreamMs)}`);
      }
      assert.equal(pipeline.stats().pendingCounters, distinct.size, "one counter per distinct (minute, key, code, metric, bin), with minutes interleaved");
      // One series per key: event() gives each of these keys a single code.
      const before = pipeline.stats().series;
      await pipeline.flush();
      assert.equal(pipeline.stats().pendingCounters, 0);
      // An odd round's flush lets go of keys 20–39, idle through it; the next round takes them up again.
      assert.deepEqual([before, pipeline.stats().series], [40, round % 2 === 1 ? 20 : 40], `round ${round}`);
    }
    // With no traffic at all, the flush that ends an idle interval still lets every series go.
    assert.equal(pipeline.stats().series, 20);
    await pipeline.flush();
    assert.equal(pipeline.stats().series, 0, "idle through a whole interval, with nothing to write");
    const got = new Map<string, number>();
    for (const period of ["minute", "hour", "day"] as const) {
      const rows = await store.queryUsage({ period, from: T0 - 86_400_000, to: T0 + 86_400_000, groupBy: "key", limit: 1_000_000 });
      for (const r of rows) got.set(`${period}|${r.bucketStart}|${r.group}|${r.code}|${r.metric}|${r.bin}`, r.count);
    }
    assert.deepEqual(new Map([...got].sort()), new Map([...want].sort()));
  });

  test("rawLogSampling keeps a fraction of raw logs; counts stay exact", async () => {
    const store = createMemoryStore();
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings({ rawLogSampling: 0 }), onError: unexpected, timers: false });
    const events = Array.from({ length: 1000 }, (_, i) => event(i));
    for (const e of events) pipeline.record({ ...e });
    await pipeline.flush();
    assert.deepEqual(await totals(store, "minute"), expected(events));
    assert.equal((await store.listRequestLogs({ limit: 10 })).length, 0);

    const half = createMemoryStore();
    const sampled = createUsagePipeline({ store: half, clock: createManualClock(T0), settings: settings({ rawLogSampling: 0.5 }), onError: unexpected, timers: false });
    for (const e of events) sampled.record({ ...e });
    await sampled.flush();
    const kept = (await half.listRequestLogs({ limit: 2000 })).length;
    assert.ok(kept > 400 && kept < 600, `about half kept: ${kept}`);
    assert.deepEqual(await totals(half, "hour"), expected(events));
  });

  test("a flush with many keys is written as several batches; after a failure the next flush resumes with the one that failed", async () => {
    const inner = createMemoryStore();
    let failAt = -1;
    const attempts: Array<{ id: string; bins: number; logs: number }> = [];
    const store: Store = Object.assign(Object.create(inner) as Store, {
      async recordAnalytics(batch: AnalyticsBatch) {
        attempts.push({ id: batch.id, bins: batch.counters.reduce((n, c) => n + c.bins.length / 2, 0), logs: batch.logs.length });
        if (attempts.length === failAt) throw new KeygateError("STORE_UNAVAILABLE", "down", 503);
        return inner.recordAnalytics(batch);
      },
    });
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings({ maxQueue: 100 }), onError: unexpected, timers: false });
    // 12,000 keys, one event each: 12,000 counters of one bin, a batch per BATCH_MAX_BINS.
    const events = Array.from({ length: 12_000 }, (_, i) => event(i, { keyId: `key_${i}`, code: "VALID", status: 200 }));
    for (const e of events) pipeline.record({ ...e });
    failAt = 2;
    await assert.rejects(pipeline.flush(), /down/);
    assert.equal(pipeline.stats().retrying, true);
    assert.deepEqual(attempts.map((a) => [a.bins, a.logs]), [[BATCH_MAX_BINS, 100], [BATCH_MAX_BINS, 0]]);
    const extra = event(20_000, { keyId: "key_late", code: "VALID", status: 200 });
    pipeline.record({ ...extra });
    await pipeline.flush();
    assert.deepEqual(attempts.slice(2).map((a) => [a.bins, a.logs]), [[BATCH_MAX_BINS, 0], [12_000 - 2 * BATCH_MAX_BINS, 0], [1, 1]]);
    assert.equal(attempts[2]!.id, attempts[1]!.id, "the failed batch again, under its id");
    assert.equal(new Set(attempts.map((a) => a.id)).size, 4, "every other batch its own id");
    for (const period of ["minute", "hour"] as const) {
      const rows = await inner.queryUsage({ period, from: T0 - 86_400_000, to: T0 + 86_400_000, groupBy: "key", limit: 20_000 });
      const byKey = new Map<string, number>();
      for (const r of rows) byKey.set(r.group!, (byKey.get(r.group!) ?? 0) + r.count);
      assert.equal(byKey.size, 12_001, period);
      assert.ok([...byKey.values()].every((n) => n === 1), `${period}: every event once`);
    }
    assert.equal(pipeline.stats().retrying, false);
  });

  test("a failed flush loses nothing, and a batch whose commit was not acknowledged is not counted twice", async () => {
    const inner = createMemoryStore();
    let failures = 0;
    let lostAcks = 0;
    const attempts: string[] = [];
    const store: Store = Object.assign(Object.create(inner) as Store, {
      async recordAnalytics(batch: AnalyticsBatch) {
        attempts.push(batch.id);
        if (failures > 0) { failures--; throw new KeygateError("STORE_UNAVAILABLE", "down", 503); }
        const applied = await inner.recordAnalytics(batch);
        if (lostAcks > 0) { lostAcks--; throw new KeygateError("STORE_UNAVAILABLE", "connection lost after commit", 503); }
        return applied;
      },
    });
    const pipeline = createUsagePipeline({ store, clock: createManualClock(T0), settings: settings(), onError: unexpected, timers: false });
    const events: UsageEvent[] = [];
    const record = (n: number): void => {
      for (let i = 0; i < n; i++) { const e = event(events.length); events.push(e); pipeline.record({ ...e }); }
    };

    record(50);
    failures = 2;
    await assert.rejects(pipeline.flush());
    record(30); // while the first batch waits for its retry
    await assert.rejects(pipeline.flush());
    assert.equal(pipeline.stats().retrying, true);
    lostAcks = 1;
    await assert.rejects(pipeline.flush(), /after commit/);
    record(20);
    await pipeline.flush(); // the first batch again (skipped by id), then everything since
    assert.equal(attempts[0], attempts[1]);
    assert.equal(attempts[0], attempts[2]);
    assert.equal(attempts[0], attempts[3], "retried under the same id");
    assert.notEqual(attempts[4], attempts[0]);
    assert.deepEqual(await totals(inner, "minute"), expected(events));
    assert.deepEqual(await totals(inner, "day"), expected(events));
    assert.equal((await inner.listRequestLogs({ limit: 1000 })).length, 100, "each log once");
    assert.equal(pipeline.stats().retrying, false);
  });

  test("two nodes writing to one SQLite database add up to exactly what one node would", async () => {
    const dir = mkdtempSync(join(tmpdir(), "keygate-analytics-"));
    const shared = createSqliteStore({ filename: join(dir, "shared.db") });
    const single = createMemoryStore();
    try {
      await shared.migrate();
      const clock = createManualClock(T0);
      const nodes = [0, 1].map(() => createUsagePipeline({ store: shared, clock, settings: settings(), onError: unexpected, timers: false }));
      const one = createUsagePipeline({ store: single, clock, settings: settings(), onError: unexpected, timers: false });
      const events = Array.from({ length: 4000 }, (_, i) => event(i, { at: T0 + i * 30, latencyMs: 0.01 * 1.7 ** (i % 23) }));
      for (const [i, e] of events.entries()) {
        nodes[i % 2]!.record({ ...e });
        one.record({ ...e });
        if (i % 997 === 0) await Promise.all(nodes.map((n) => n.flush())); // flushes interleave with traffic
      }
      await Promise.all([...nodes.map((n) => n.flush()), one.flush()]);
      const queries = (store: Store) => createAnalyticsQueries({ store, clock, limiter: createMemoryRateLimiter(), apis: new Map() });
      for (const interval of ["minute", "hour", "day"] as const) {
        const q = { interval, groupBy: "account" as const, from: T0 - 86_400_000, to: T0 + 86_400_000 };
        assert.deepEqual(await queries(shared).query(q), await queries(single).query(q), `${interval}: counts and percentiles identical`);
      }
      assert.deepEqual(await totals(shared, "hour"), expected(events));
    } finally {
      await shared.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("prune keeps each kind of data for its own retention", async () => {
    const store = createMemoryStore();
    const clock = createManualClock(T0);
    const pipeline = createUsagePipeline({ store, clock, settings: settings({ retentionDays: 2, minuteRetentionDays: 1, hourRetentionDays: 3, dayRetentionDays: 0 }), onError: unexpected, timers: false });
    pipeline.record(event(0));
    await pipeline.flush();
    const day = 86_400_000;
    const span = (interval: UsagePeriod) => (interval === "minute" ? 3_600_000 : 10 * day);
    const count = async (interval: UsagePeriod) => (await totals(store, interval, T0 - span(interval), T0 + span(interval)))["key_a:RATE_LIMITED"] ?? 0;
    clock.set(T0 + 1.5 * day);
    await pipeline.prune();
    assert.deepEqual([await count("minute"), await count("hour"), await count("day"), (await store.listRequestLogs({ limit: 5 })).length], [0, 1, 1, 1]);
    clock.set(T0 + 2.5 * day);
    await pipeline.prune();
    assert.deepEqual([await count("minute"), await count("hour"), await count("day"), (await store.listRequestLogs({ limit: 5 })).length], [0, 1, 1, 0]);
    clock.set(T0 + 400 * day);
    await pipeline.prune();
    assert.deepEqual([await count("hour"), await count("day")], [0, 1], "day buckets are kept forever with dayRetentionDays 0");
  });
});
