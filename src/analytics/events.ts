import type { RequestLog, UsageDimensions } from "../store/types.js";

/** Where a verification came from. */
export type UsageSource = "gateway" | "forward-auth" | "verify" | "library";

/**
 * One verification, as every path reports it: the gateway, forward-auth, the verify API and
 * in-process calls. It never holds the secret, only the id of the key it resolved to.
 */
export interface UsageEvent extends UsageDimensions {
  /** Epoch ms. */
  at: number;
  /** The verdict code (`VALID`, `REVOKED`, …), or the error code of a failed verification (`STORE_UNAVAILABLE`). */
  code: string;
  /**
   * The HTTP status the client got: real for the gateway and forward-auth; for the verify API
   * and in-process calls, the status of the verdict's code (their caller answers the client).
   */
  status: number;
  method: string | null;
  /** Without the query string. */
  path: string | null;
  /** keygate's own time: from the request's arrival (HTTP) or the call (in-process) to the verdict. */
  latencyMs: number;
  /** Gateway only: from the verdict until the upstream's response was delivered. */
  upstreamMs: number | null;
  ip: string | null;
  requestId: string | null;
  source: UsageSource;
}

/**
 * What a caller of `keygate.verifyKey` may add about the request it verifies, e.g. a
 * middleware passing the route.
 *
 * @example
 * await keygate.verifyKey({ api: "pay", key, ip }, { method: "GET", path: "/v1/balance", requestId });
 */
export interface VerifyContext {
  source?: UsageSource | undefined;
  requestId?: string | undefined;
  method?: string | undefined;
  path?: string | undefined;
}

/** An event as the query API, the log and the live stream show it: `at` is ISO 8601. */
export type UsageEventView = Omit<UsageEvent, "at"> & { at: string };

/** A stored raw request log: an event with its `log_…` id. */
export interface RequestLogView extends UsageEventView {
  id: string;
}

/** Microseconds, as the log stores them; ms with three decimals, as it shows them. */
export const toMicros = (ms: number): number => Math.max(0, Math.round(ms * 1000));
const toMillis = (us: number): number => us / 1000;

// Column widths of the log table: a longer value must not make a whole batch unwritable.
const clip = (v: string | null | undefined, max: number): string | null => (v === null || v === undefined || v === "" ? null : v.length > max ? v.slice(0, max) : v);

/** Fits an event to what the store keeps: path without query, bounded strings. */
export function normalizeEvent(e: UsageEvent): UsageEvent {
  const q = e.path?.indexOf("?") ?? -1;
  e.path = clip(q >= 0 ? e.path!.slice(0, q) : e.path, 1024);
  e.method = clip(e.method?.toUpperCase(), 16);
  e.ip = clip(e.ip, 64);
  e.requestId = clip(e.requestId, 128);
  return e;
}

export function eventView(e: UsageEvent): UsageEventView {
  return {
    at: new Date(e.at).toISOString(), api: e.api, keyId: e.keyId, accountId: e.accountId, applicationId: e.applicationId,
    environment: e.environment, code: e.code, status: e.status, method: e.method, path: e.path,
    latencyMs: toMillis(toMicros(e.latencyMs)), upstreamMs: e.upstreamMs === null ? null : toMillis(toMicros(e.upstreamMs)),
    ip: e.ip, requestId: e.requestId, source: e.source,
  };
}

export function logView(l: RequestLog): RequestLogView {
  return {
    id: l.id, at: new Date(l.at).toISOString(), api: l.api, keyId: l.keyId, accountId: l.accountId, applicationId: l.applicationId,
    environment: l.environment, code: l.code, status: l.status, method: l.method, path: l.path,
    latencyMs: toMillis(l.latencyUs), upstreamMs: l.upstreamUs === null ? null : toMillis(l.upstreamUs),
    ip: l.ip, requestId: l.requestId, source: l.source as UsageSource,
  };
}
