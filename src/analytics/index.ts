/**
 * Usage analytics: one event per verification, batched into exact aggregates and sampled raw
 * logs, a live feed, and the queries behind /v1/analytics, /v1/logs, /v1/keys/:id/usage and
 * /v1/events. See docs/analytics.md.
 */
import { performance } from "node:perf_hooks";
import { KeygateError } from "../lib/errors.js";
import { isPromise } from "../lib/promise.js";
import type { Clock } from "../lib/clock.js";
import type { RateLimiter } from "../limits/types.js";
import type { Store, UsageDelta, UsageFilter } from "../store/types.js";
import { VERDICT_STATUS } from "../verify/codes.js";
import type { VerdictCode } from "../verify/codes.js";
import type { ApiRuntime, Verdict } from "../verify/engine.js";
import { normalizeEvent } from "./events.js";
import type { UsageEvent, VerifyContext } from "./events.js";
import { createLiveFeed } from "./live.js";
import type { LiveSubscriber } from "./live.js";
import { ANALYTICS_DEFAULTS, createUsagePipeline } from "./pipeline.js";
import type { AnalyticsSettings, PipelineStats } from "./pipeline.js";
import { createAnalyticsQueries } from "./query.js";
import type { AnalyticsQueries } from "./query.js";

export type { UsageEvent, UsageEventView, RequestLogView, UsageSource, VerifyContext } from "./events.js";
export type { AnalyticsQuery, AnalyticsResult, AnalyticsScope, KeyUsage, LogPage, LogQuery, Percentiles, UsageGroup, UsageSeriesPoint, UsageStats } from "./query.js";
export type { AnalyticsSettings, PipelineStats } from "./pipeline.js";
export type { LiveSubscriber } from "./live.js";
export { ANALYTICS_DEFAULTS } from "./pipeline.js";
export { PERCENTILE_RELATIVE_ERROR } from "./histogram.js";

/**
 * An HTTP request about to be verified, announced with {@link Analytics.expect}: the event of
 * its verification is handed to `attach` instead of being recorded, so the front end can
 * complete it (status, upstream time) when the response ends.
 */
export interface ExpectedVerification {
  attach(event: UsageEvent): void;
}

/** What a verification is of, as its event records it. */
export interface Observed {
  api: string;
  ip?: string | undefined;
}

/**
 * `keygate.analytics`.
 *
 * @example
 * const usage = await keygate.analytics.query({ interval: "hour", groupBy: "key", accountId });
 * const page = await keygate.analytics.logs({ keyId, limit: 20 }, { accountId }); // a customer's view
 * const stop = keygate.analytics.subscribe({ api: "pay" }, { event: (e) => console.log(e.code), end: () => {} });
 */
export interface Analytics extends AnalyticsQueries {
  readonly settings: Readonly<AnalyticsSettings>;
  /** Records one event: synchronous, O(1), never throws. */
  record(event: UsageEvent): void;
  /**
   * Runs one verification and records its event; used by the facade's `verifyKey` and
   * `tokens.verify`. Infrastructure failures (5xx) are recorded too, with their error code.
   * `run` gets the time the event is recorded at (the clock is read once per verification).
   */
  observe<I extends Observed>(input: I, context: VerifyContext | undefined, run: (input: I, now: number) => Verdict | Promise<Verdict>): Promise<Verdict>;
  /** `observe` without the promise when `run` answers synchronously; throws what `run` throws. */
  observeNow<I extends Observed>(input: I, context: VerifyContext | undefined, run: (input: I, now: number) => Verdict | Promise<Verdict>): Verdict | Promise<Verdict>;
  /**
   * Announces that the next verification, started synchronously after this call (as
   * `authenticateRequest` does), belongs to an HTTP request; see `trackVerification` in
   * ./http.ts. The announcement lapses at the end of the current synchronous run.
   */
  expect(request: ExpectedVerification): void;
  /** Live events matching `filter` (scope already ANDed in by the caller). Returns unsubscribe. */
  subscribe(filter: UsageFilter, subscriber: LiveSubscriber): () => void;
  stats(): PipelineStats & { subscribers: number };
  /** Writes pending counters and logs now. */
  flush(): Promise<void>;
  /** Deletes logs and aggregates past their retention now. */
  prune(): Promise<void>;
  /** Ends live subscriptions, stops the timers and flushes. */
  close(): Promise<void>;
}

export interface CreateAnalyticsOptions {
  store: Store;
  clock: Clock;
  limiter: RateLimiter;
  apis: ReadonlyMap<string, ApiRuntime>;
  /** The config's `analytics` section; missing fields take their defaults. */
  settings?: Partial<AnalyticsSettings> | undefined;
  onError: (error: unknown) => void;
  /** The usage recorder's counts not yet written, so key usage reads include them. */
  pendingUsage?: ((keyId: string) => UsageDelta | undefined) | undefined;
  /** For tests: no background flush or prune. */
  timers?: boolean;
}

export function createAnalytics(options: CreateAnalyticsOptions): Analytics {
  const settings: AnalyticsSettings = { ...ANALYTICS_DEFAULTS };
  for (const [k, v] of Object.entries(options.settings ?? {})) if (v !== undefined) (settings as unknown as Record<string, unknown>)[k] = v;
  const { clock, apis } = options;
  const pipeline = createUsagePipeline({ store: options.store, clock, settings, onError: options.onError, timers: options.timers });
  const live = createLiveFeed();
  const queries = createAnalyticsQueries(options);
  let expected: ExpectedVerification | null = null;
  /**
   * Whether a microtask to end the current announcement is queued. One shared function rather
   * than a closure per announcement: every request the gateway verifies makes one, and an
   * announcement not taken by the end of its synchronous run lapses all the same.
   */
  let lapsing = false;
  const lapse = (): void => {
    lapsing = false;
    expected = null;
  };
  let closed = false;

  const record = (event: UsageEvent): void => {
    if (closed) return;
    try {
      normalizeEvent(event);
      pipeline.record(event);
      live.publish(event);
    } catch (e) {
      // Analytics must never fail a verification; a bug here shows as a background error.
      options.onError(e);
    }
  };

  const settle = (event: UsageEvent, target: ExpectedVerification | VerifyContext | null): void => {
    if (target !== null && "attach" in target) { target.attach(event); return; }
    if (target !== null) {
      if (target.source !== undefined) event.source = target.source;
      event.requestId = target.requestId ?? null;
      event.method = target.method ?? null;
      event.path = target.path ?? null;
    }
    record(event);
  };

  const base = (at: number, api: string, ip: string | undefined, code: string, status: number, latencyMs: number): UsageEvent => ({
    at, api, keyId: null, accountId: null, applicationId: null, environment: null, code, status,
    method: null, path: null, latencyMs, upstreamMs: null, ip: ip || null, requestId: null, source: "library",
  });

  const settleVerdict = (verdict: Verdict, at: number, ip: string | undefined, target: ExpectedVerification | VerifyContext | null, started: number): Verdict => {
    const event = base(at, verdict.api, ip, verdict.code, VERDICT_STATUS[verdict.code as VerdictCode] ?? 401, performance.now() - started);
    event.keyId = verdict.keyId ?? null;
    event.accountId = verdict.accountId ?? null;
    event.applicationId = verdict.applicationId ?? null;
    event.environment = verdict.environment ?? null;
    settle(event, target);
    return verdict;
  };

  const settleError = (error: unknown, at: number, api: string, ip: string | undefined, target: ExpectedVerification | VerifyContext | null, started: number): never => {
    // Bad input (400s) is the caller's mistake, not a verification; an outage is one.
    const status = error instanceof KeygateError ? error.status : 500;
    if (status >= 500 && apis.has(api)) {
      settle(base(at, api, ip, error instanceof KeygateError ? error.code : "INTERNAL_ERROR", status, performance.now() - started), target);
    }
    throw error;
  };

  function observeNow<I extends Observed>(input: I, context: VerifyContext | undefined, run: (input: I, now: number) => Verdict | Promise<Verdict>): Verdict | Promise<Verdict> {
    const { api, ip } = input;
    const target: ExpectedVerification | VerifyContext | null = context ?? expected;
    expected = null;
    const at = clock.now();
    const started = performance.now();
    let outcome: Verdict | Promise<Verdict>;
    try {
      outcome = run(input, at);
    } catch (e) {
      return settleError(e, at, api, ip, target, started);
    }
    // A verdict reached synchronously (a cached key, memory limits) is recorded at once, with
    // no continuation queued behind it.
    if (!isPromise(outcome)) return settleVerdict(outcome, at, ip, target, started);
    return outcome.then((v) => settleVerdict(v, at, ip, target, started), (error: unknown) => settleError(error, at, api, ip, target, started));
  }

  return {
    ...queries,
    settings,
    record,
    // Without `promised` and its closure: this runs for every verifyKey call.
    observe(input, context, run) {
      try {
        const outcome = observeNow(input, context, run);
        return isPromise(outcome) ? outcome : Promise.resolve(outcome);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    observeNow,
    expect(request) {
      expected = request;
      if (!lapsing) {
        lapsing = true;
        queueMicrotask(lapse);
      }
    },
    subscribe: (filter, subscriber) => {
      if (closed) { subscriber.end(); return () => {}; }
      return live.subscribe(filter, subscriber);
    },
    stats: () => ({ ...pipeline.stats(), subscribers: live.size() }),
    flush: () => pipeline.flush(),
    prune: () => pipeline.prune(),
    async close() {
      closed = true;
      live.close();
      await pipeline.close();
    },
  };
}
