/**
 * One call to the service over `fetch`: the root key, a timeout per attempt, and retries with
 * exponential backoff and full jitter for the operations ./operations.ts marks as safe to
 * repeat. Only web-standard APIs (fetch, AbortController, setTimeout, URLSearchParams), so it
 * runs unchanged on Node, Bun, Deno, browsers and edge runtimes.
 */
import { KeygateApiError, KeygateNetworkError } from "./errors.js";
import { OPERATIONS } from "./operations.js";
import type { OperationKey } from "./operations.js";

export interface TransportOptions {
  /** Where the keygate service listens, e.g. `http://127.0.0.1:8080`; a path prefix is kept. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <root key>` on every call. */
  rootKey: string;
  /** Per attempt, until the whole response body has arrived. Default 10 000 ms. */
  timeoutMs?: number | undefined;
  /** Further attempts for retryable calls after a 5xx, a network error or a timeout. Default 2. */
  retries?: number | undefined;
  /** The backoff's base: attempt n waits a random time up to base × 2ⁿ⁻¹. Default 100 ms. */
  retryDelayMs?: number | undefined;
  /** The backoff's cap, and the longest `Retry-After` that is waited for. Default 2 000 ms. */
  maxRetryDelayMs?: number | undefined;
  /** A fetch to use instead of the global one (a test double, a fetch with a custom agent). */
  fetch?: typeof fetch | undefined;
  /** Extra headers sent with every call. */
  headers?: Record<string, string> | undefined;
}

/** Per-call options. */
export interface RequestOptions {
  /** Aborts the call, including any wait between retries; the abort reason is thrown as is. */
  signal?: AbortSignal | undefined;
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number | undefined;
  /** Sent as `X-Request-Id`; the service logs and echoes it. */
  requestId?: string | undefined;
}

export interface Call {
  op: OperationKey;
  /** Values for `{name}` placeholders of the path; each is URI-encoded. */
  params?: Record<string, string>;
  query?: Record<string, string | number | undefined> | undefined;
  body?: unknown;
}

export type Transport = <T>(call: Call, options?: RequestOptions) => Promise<T>;

/** What one attempt produced: a complete response, or why there is none. */
type Attempt =
  | { kind: "response"; status: number; text: string; headers: Headers }
  | { kind: "timeout" | "network"; error: unknown };

export const isRetryableStatus = (status: number): boolean => status >= 500 && status <= 599 && status !== 501;

/** The URL of a call: the base URL, the path with its `{name}` placeholders filled and encoded, the query. */
export function urlOf(baseUrl: string, call: Call): string {
  const path = call.op.slice(call.op.indexOf(" ") + 1).replace(/\{(\w+)\}/g, (_m, name: string) => {
    const value = call.params?.[name];
    if (value === undefined || value === "") throw new TypeError(`keygate client: ${call.op} needs a non-empty ${name}`);
    return encodeURIComponent(value);
  });
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(call.query ?? {})) if (v !== undefined) query.set(k, String(v));
  const qs = query.toString();
  return `${baseUrl.replace(/\/+$/, "")}${path}${qs ? `?${qs}` : ""}`;
}

/** The client's fetch: the one it was given, or the global one looked up at call time (so a test may replace it). */
export const fetchOf = (options: TransportOptions): typeof fetch =>
  options.fetch ?? ((...args: Parameters<typeof fetch>) => globalThis.fetch(...args));

/** `Retry-After` in ms: delta-seconds or an HTTP date; null when absent or unreadable. */
function retryAfterMs(headers: Headers): number | null {
  const value = headers.get("retry-after");
  if (value === null) return null;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export function createTransport(options: TransportOptions): Transport {
  const fetchImpl = fetchOf(options);
  const retries = Math.max(0, Math.floor(options.retries ?? 2));
  const baseDelay = options.retryDelayMs ?? 100;
  const maxDelay = options.maxRetryDelayMs ?? 2000;
  const defaultTimeout = options.timeoutMs ?? 10_000;

  async function attempt(url: string, init: RequestInit, timeoutMs: number, signal: AbortSignal | undefined): Promise<Attempt> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = (): void => controller.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const res = await fetchImpl(url, { ...init, signal: controller.signal });
      // Read inside the timeout too: a service that sends headers and then stalls is as stuck as one that sends nothing.
      const text = await res.text();
      return { kind: "response", status: res.status, text, headers: res.headers };
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      return { kind: timedOut ? "timeout" : "network", error };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  return async function request<T>(call: Call, opts: RequestOptions = {}): Promise<T> {
    const method = call.op.slice(0, call.op.indexOf(" "));
    const url = urlOf(options.baseUrl, call);
    const headers: Record<string, string> = { ...options.headers, accept: "application/json", authorization: `Bearer ${options.rootKey}` };
    if (call.body !== undefined) headers["content-type"] = "application/json";
    if (opts.requestId !== undefined) headers["x-request-id"] = opts.requestId;
    const init: RequestInit = { method, headers, ...(call.body !== undefined ? { body: JSON.stringify(call.body) } : {}) };
    const attempts = OPERATIONS[call.op].retry ? retries + 1 : 1;
    const timeoutMs = opts.timeoutMs ?? defaultTimeout;

    for (let n = 1; ; n++) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      const result = await attempt(url, init, timeoutMs, opts.signal);
      let wait = Math.random() * Math.min(maxDelay, baseDelay * 2 ** (n - 1));

      if (result.kind === "response") {
        const { status, text } = result;
        let body: unknown = null;
        let parsed = true;
        if (text !== "") {
          try { body = JSON.parse(text); } catch { parsed = false; }
        }
        if (status >= 200 && status < 300) {
          if (!parsed) throw new KeygateApiError(status, { code: "INVALID_RESPONSE", detail: `${method} ${url} answered ${status} with a body that is not JSON.` }, result.headers.get("x-request-id"));
          return body as T;
        }
        const error = new KeygateApiError(status, parsed ? body : null, result.headers.get("x-request-id"));
        if (n >= attempts || !isRetryableStatus(status)) throw error;
        // The service asks for a pause: wait for it, unless it is longer than this client waits at all.
        const asked = retryAfterMs(result.headers);
        if (asked !== null) {
          if (asked > maxDelay) throw error;
          wait = Math.max(wait, asked);
        }
      } else if (n >= attempts) {
        const what = result.kind === "timeout" ? `no answer within ${timeoutMs} ms` : `request failed: ${(result.error as Error)?.message ?? String(result.error)}`;
        throw new KeygateNetworkError(result.kind === "timeout" ? "TIMEOUT" : "NETWORK_ERROR", `${method} ${url}: ${what}${n > 1 ? ` (${n} attempts)` : ""}`, n, result.error);
      }
      await sleep(wait, opts.signal);
    }
  };
}
