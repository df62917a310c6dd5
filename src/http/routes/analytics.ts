import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../../keygate.js";
import type { UsageFilter } from "../../store/types.js";
import { IdParams, Nullable, ProblemSchema } from "../schemas.js";
import { streamUsage } from "../usage-stream.js";

/**
 * The /v1 analytics routes: usage aggregates, raw request logs, a key's live rate-limit state
 * and the server-sent-events stream of verifications. The caller has checked the root key;
 * the functions behind them take an account scope for the customer portal.
 */
const DateTime = Type.String({ format: "date-time" });
const Ref = (description: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 64, description }));

const filterFields = {
  api: Ref("Only this API."),
  keyId: Ref("Only this key."),
  accountId: Ref("Only this account's keys."),
  applicationId: Ref("Only this application's keys."),
  environment: Ref("Only keys of this environment."),
  code: Type.Optional(Type.String({ pattern: "^[A-Z][A-Z0-9_]{0,63}$", description: "Only this outcome: a verdict code (VALID, REVOKED, …) or an error code (STORE_UNAVAILABLE)." })),
};
const Limit = (max: number, fallback: number) => Type.String({ pattern: max === 1000 ? "^(?:[1-9][0-9]{0,2}|1000)$" : "^[1-9][0-9]{0,2}$", description: `1 to ${max}; default ${fallback}.` });

const AnalyticsQuerystring = Type.Object({
  interval: Type.Optional(Type.Union([Type.Literal("minute"), Type.Literal("hour"), Type.Literal("day")], { description: "Bucket length, UTC-aligned; default hour." })),
  groupBy: Type.Optional(Type.Union([Type.Literal("key"), Type.Literal("application"), Type.Literal("account"), Type.Literal("api")], { description: "One series per key, application, account or api; omitted, one series in all." })),
  from: Type.Optional(Type.String({ format: "date-time", description: "Rounded down to the interval. Default: 60 minutes, 24 hours or 30 days before `to`." })),
  to: Type.Optional(Type.String({ format: "date-time", description: "Exclusive, rounded up to the interval. Default: now." })),
  ...filterFields,
  limit: Type.Optional(Limit(1000, 100)),
}, { additionalProperties: false });

const LogsQuerystring = Type.Object({
  ...filterFields,
  status: Type.Optional(Type.String({ pattern: "^[1-5][0-9]{2}$", description: "Only this HTTP status." })),
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  cursor: Type.Optional(Type.String({ pattern: "^log_[0-9A-Za-z]{8,60}$", description: "`nextCursor` of the previous page." })),
  limit: Type.Optional(Limit(1000, 50)),
}, { additionalProperties: false });

const EventsQuerystring = Type.Object(filterFields, { additionalProperties: false });

const PercentilesSchema = Nullable(Type.Object({ p50: Type.Number(), p95: Type.Number(), p99: Type.Number() }, { description: "Milliseconds, each within ±4.5 % (fixed log-spaced histogram)." }));
const statsFields = {
  count: Type.Integer(), successes: Type.Integer({ description: "Verdict VALID." }), errors: Type.Integer(),
  successRate: Nullable(Type.Number()), errorsByCode: Type.Record(Type.String(), Type.Integer()),
  latencyMs: PercentilesSchema, upstreamMs: PercentilesSchema,
};
const AnalyticsResponse = Type.Object({
  interval: Type.String(), groupBy: Nullable(Type.String()), from: DateTime, to: DateTime,
  data: Type.Array(Type.Object({
    group: Nullable(Type.String({ description: "The key, application, account or api id; null for none (unknown keys) or without groupBy." })),
    total: Type.Object(statsFields),
    series: Type.Array(Type.Object({ start: DateTime, ...statsFields }), { description: "Buckets with requests, oldest first." }),
  })),
});

const eventFields = {
  at: DateTime, api: Type.String(), keyId: Nullable(Type.String()), accountId: Nullable(Type.String()),
  applicationId: Nullable(Type.String()), environment: Nullable(Type.String()), code: Type.String(), status: Type.Integer(),
  method: Nullable(Type.String()), path: Nullable(Type.String()), latencyMs: Type.Number(), upstreamMs: Nullable(Type.Number()),
  ip: Nullable(Type.String()), requestId: Nullable(Type.String()),
  source: Type.Union([Type.Literal("gateway"), Type.Literal("forward-auth"), Type.Literal("verify"), Type.Literal("library")]),
};
const LogSchema = Type.Object({ id: Type.String(), ...eventFields });
const LogPage = Type.Object({ data: Type.Array(LogSchema), nextCursor: Nullable(Type.String()) });

const KeyUsageSchema = Type.Object({
  keyId: Type.String(), api: Type.String(), accountId: Type.String(),
  rateLimit: Nullable(Type.Object({
    limit: Type.Integer(), windowSeconds: Type.Integer(), used: Type.Integer(), remaining: Type.Integer(), resetAt: DateTime,
  })),
  usageCount: Type.Integer(), lastUsedAt: Nullable(DateTime),
});

const errors = { 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema };

const time = (v: string | undefined): number | undefined => (v === undefined ? undefined : Date.parse(v));
const filterOf = (q: Static<typeof EventsQuerystring>): UsageFilter => ({
  api: q.api, keyId: q.keyId, accountId: q.accountId, applicationId: q.applicationId, environment: q.environment, code: q.code,
});

/** Registers GET /analytics, /logs, /logs/:id, /keys/:id/usage and /events under the caller's prefix. */
export function registerAnalyticsRoutes(parent: FastifyInstance, keygate: Keygate): void {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const analytics = keygate.analytics;

  app.get("/analytics", {
    schema: {
      tags: ["analytics"], summary: "Usage aggregates over time",
      description: "Counts, successes, errors by code and latency percentiles per minute, hour or day, optionally per key, application, account or api. Exact: every verification is counted, also when raw logs are sampled. Written in batches, so a request shows here within `analytics.flushIntervalMs`.",
      querystring: AnalyticsQuerystring, response: { 200: AnalyticsResponse, ...errors },
    },
  }, async (request) => {
    const q = request.query;
    return analytics.query({
      ...filterOf(q), interval: q.interval ?? "hour", groupBy: q.groupBy ?? null, from: time(q.from), to: time(q.to),
      limit: q.limit === undefined ? undefined : Number(q.limit),
    });
  });

  app.get("/logs", {
    schema: {
      tags: ["analytics"], summary: "Raw request logs, newest first, cursor-paginated",
      description: "Kept for `analytics.retentionDays`. Under a flood they may be sampled (see docs/analytics.md); /v1/analytics is always exact.",
      querystring: LogsQuerystring, response: { 200: LogPage, ...errors },
    },
  }, async (request) => {
    const q = request.query;
    return analytics.logs({
      ...filterOf(q), status: q.status === undefined ? undefined : Number(q.status), from: time(q.from), to: time(q.to),
      cursor: q.cursor, limit: q.limit === undefined ? undefined : Number(q.limit),
    });
  });

  app.get("/logs/:id", {
    schema: { tags: ["analytics"], summary: "One request log", params: IdParams, response: { 200: LogSchema, ...errors } },
  }, async (request) => analytics.log(request.params.id));

  app.get("/keys/:id/usage", {
    schema: {
      tags: ["analytics"], summary: "A key's live rate-limit state and usage",
      description: "Requests used and remaining in the key's current rate-limit window (read without consuming), and its lifetime usage count.",
      params: IdParams, response: { 200: KeyUsageSchema, ...errors },
    },
  }, async (request) => analytics.keyUsage(request.params.id));

  /** Ends every open stream; on server close, so that close() does not wait for clients. */
  const streams = new Set<() => void>();
  app.addHook("preClose", async () => { for (const end of [...streams]) end(); });

  app.get("/events", {
    schema: {
      tags: ["analytics"], summary: "Live verifications (server-sent events)",
      description: "`text/event-stream`: an `event: usage` with the event as JSON for each matching verification as it happens, a comment line every `analytics.heartbeatSeconds`, and `event: dropped` with a count when the client reads too slowly to get them all.",
      querystring: EventsQuerystring, response: { 400: ProblemSchema, 401: ProblemSchema },
    },
  }, (request, reply) => streamUsage(request, reply, { analytics, filter: filterOf(request.query), streams, retryMs: 2000, cacheControl: "no-cache, no-transform" }));
}
