/**
 * `GET /v1/events`, the live stream of verifications, as an async iterable over `fetch`: no
 * EventSource (it cannot send the root key as a header, and Node 20 has none), only web
 * standards, so it runs wherever the rest of the client does.
 *
 * The connection is reopened when it is lost, as EventSource would: after the service's
 * `retry` time (keygate sends 2000 ms), doubling for each failed attempt in a row, with jitter.
 * `Last-Event-ID` is sent on reconnection when the service has sent ids; keygate's stream
 * carries none and replays nothing, so a gap is reported as a `reconnected` item instead.
 */
import { KeygateApiError, KeygateNetworkError } from "./errors.js";
import { createSseParser } from "./sse.js";
import type { SseMessage } from "./sse.js";
import { fetchOf, isRetryableStatus, sleep, urlOf } from "./transport.js";
import type { TransportOptions } from "./transport.js";
import type { EventsFilter, UsageEvent } from "./types.js";

/**
 * What the stream yields:
 * - `usage`: one verification, as it happened;
 * - `dropped`: the service skipped `count` verifications because this client read too slowly;
 * - `reconnected`: the connection was lost and is open again after `attempts` tries;
 *   verifications in between were not delivered (read them from `logs.list`).
 */
export type StreamEvent =
  | { type: "usage"; data: UsageEvent }
  | { type: "dropped"; count: number }
  | { type: "reconnected"; attempts: number };

/** Options of `events.stream`. */
export interface StreamOptions {
  /** Ends the stream: the loop finishes without an error, and the connection is closed. */
  signal?: AbortSignal | undefined;
  /** Sent as `X-Request-Id` with every connection attempt. */
  requestId?: string | undefined;
  /** How long each connection attempt may take to be answered; default the client's `timeoutMs`. */
  timeoutMs?: number | undefined;
  /**
   * An open connection that receives nothing (not even the heartbeat comment the service sends
   * every `analytics.heartbeatSeconds`, default 15) for this long is taken as dead and
   * reopened. Default 45 000 ms; raise it above heartbeatSeconds × 3 if that is larger; 0 never.
   */
  idleTimeoutMs?: number | undefined;
  /** Reopen a lost connection. Default true; false ends the loop (or throws) when it is lost. */
  reconnect?: boolean | undefined;
  /** The wait before reopening, until the service sends its own (`retry:`; keygate's is 2000). Default 2000 ms. */
  reconnectDelayMs?: number | undefined;
  /**
   * Failed connection attempts in a row (network errors, timeouts, 5xx) before the loop throws
   * the last one. Default 5: about a minute of waiting. A 4xx answer is thrown at once.
   */
  maxAttempts?: number | undefined;
}

const DEFAULT_RETRY_MS = 2000;
const MAX_RETRY_MS = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS = 45_000;
const DEFAULT_MAX_ATTEMPTS = 5;

/** A message of the stream as a {@link StreamEvent}; null for kinds this client does not know. */
function streamEventOf(message: SseMessage): StreamEvent | null {
  try {
    if (message.event === "usage") return { type: "usage", data: JSON.parse(message.data) as UsageEvent };
    if (message.event === "dropped") return { type: "dropped", count: Number((JSON.parse(message.data) as { count?: unknown }).count) || 0 };
  } catch {
    // A message that is not JSON is not keygate's: skip it, like an unknown kind.
  }
  return null;
}

/** How one connection attempt ended before any event was read. */
type Opening =
  | { kind: "open"; body: ReadableStream<Uint8Array> }
  | { kind: "failed"; error: KeygateApiError | KeygateNetworkError; retryable: boolean }
  | { kind: "aborted" }
  /** 204: the service asks the client not to reconnect. */
  | { kind: "closed" };

/**
 * The live stream. Nothing is sent until the loop starts; leaving the loop (`break`, `return`,
 * an exception) or aborting `signal` closes the connection.
 *
 * @example
 * const stop = new AbortController();
 * for await (const item of streamEvents(clientOptions, { api: "pay" }, { signal: stop.signal })) {
 *   if (item.type === "usage") console.log(item.data.code, item.data.keyId);
 * }
 */
export function streamEvents(options: TransportOptions, filter: EventsFilter = {}, opts: StreamOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
  const url = urlOf(options.baseUrl, { op: "GET /v1/events", query: { ...filter } });
  const fetchImpl = fetchOf(options);
  const { signal } = opts;
  const connectTimeout = opts.timeoutMs ?? options.timeoutMs ?? 10_000;
  const idleTimeout = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const reconnect = opts.reconnect ?? true;
  const maxAttempts = Math.max(1, opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);

  async function open(connection: AbortController, lastEventId: string, timedOut: () => boolean, attempts: number): Promise<Opening> {
    const headers: Record<string, string> = { ...options.headers, accept: "text/event-stream", "cache-control": "no-cache", authorization: `Bearer ${options.rootKey}` };
    if (opts.requestId !== undefined) headers["x-request-id"] = opts.requestId;
    if (lastEventId !== "") headers["last-event-id"] = lastEventId;
    try {
      const res = await fetchImpl(url, { method: "GET", headers, signal: connection.signal });
      if (res.status === 204) return { kind: "closed" };
      const type = res.headers.get("content-type") ?? "";
      if (res.status === 200 && res.body && /^text\/event-stream\b/i.test(type)) return { kind: "open", body: res.body };
      const text = await res.text();
      let body: unknown = null;
      try { body = text === "" ? null : JSON.parse(text); } catch { /* not a problem document: code HTTP_<status> */ }
      if (res.status === 200) body = { code: "INVALID_RESPONSE", detail: `GET ${url} answered 200 with ${JSON.stringify(type)}, not text/event-stream.` };
      return { kind: "failed", error: new KeygateApiError(res.status, body, res.headers.get("x-request-id")), retryable: isRetryableStatus(res.status) };
    } catch (error) {
      if (signal?.aborted) return { kind: "aborted" };
      const what = timedOut() ? `no answer within ${connectTimeout} ms` : `request failed: ${(error as Error)?.message ?? String(error)}`;
      return { kind: "failed", error: new KeygateNetworkError(timedOut() ? "TIMEOUT" : "NETWORK_ERROR", `GET ${url}: ${what}`, attempts, error), retryable: true };
    }
  }

  async function* run(): AsyncGenerator<StreamEvent, void, undefined> {
    let lastEventId = "";
    let retryMs = opts.reconnectDelayMs ?? DEFAULT_RETRY_MS;
    /** Attempts in a row that did not open a stream. */
    let failures = 0;
    let everOpened = false;

    for (;;) {
      if (signal?.aborted) return;
      const connection = new AbortController();
      const onAbort = (): void => connection.abort(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let timer: ReturnType<typeof setTimeout> | undefined;
      let timedOut = false;
      const arm = (ms: number): void => {
        clearTimeout(timer);
        timedOut = false;
        if (ms > 0) timer = setTimeout(() => { timedOut = true; connection.abort(); }, ms);
      };
      /** Why the connection ended, when it was not the service closing it (or the caller). */
      let lost: KeygateApiError | KeygateNetworkError | null = null;

      try {
        arm(connectTimeout);
        const opening = await open(connection, lastEventId, () => timedOut, failures + 1);
        clearTimeout(timer);
        if (opening.kind === "aborted" || opening.kind === "closed") return;
        if (opening.kind === "failed") {
          failures++;
          if (!opening.retryable || !reconnect || failures >= maxAttempts) throw opening.error;
        } else {
          if (everOpened) yield { type: "reconnected", attempts: failures + 1 };
          everOpened = true;
          failures = 0;
          const reader = opening.body.getReader();
          const decoder = new TextDecoder();
          const parser = createSseParser(lastEventId);
          try {
            for (;;) {
              // Only the wait for bytes is timed: a loop body that takes its time is not an idle connection.
              arm(idleTimeout);
              let chunk;
              try {
                chunk = await reader.read();
              } catch (error) {
                if (signal?.aborted) return;
                const idle = timedOut;
                lost = new KeygateNetworkError(idle ? "TIMEOUT" : "NETWORK_ERROR", `GET ${url}: ${idle ? `nothing received for ${idleTimeout} ms` : `stream failed: ${(error as Error)?.message ?? String(error)}`}`, 1, error);
                break;
              } finally {
                clearTimeout(timer);
              }
              if (chunk.done) break;
              for (const message of parser.feed(decoder.decode(chunk.value, { stream: true }))) {
                const item = streamEventOf(message);
                if (item) yield item;
                if (signal?.aborted) return;
              }
            }
          } finally {
            lastEventId = parser.lastEventId;
            retryMs = parser.retryMs ?? retryMs;
            reader.cancel().catch(() => {});
          }
          if (!reconnect) {
            if (lost) throw lost;
            return;
          }
        }
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        connection.abort();
      }

      // Exponential after failed attempts, from the service's retry time; half of it random,
      // so that clients dropped together by a restart do not all come back at the same instant.
      const delay = Math.min(MAX_RETRY_MS, retryMs * 2 ** failures);
      try {
        await sleep(delay / 2 + Math.random() * (delay / 2), signal);
      } catch {
        return; // aborted while waiting
      }
    }
  }

  return run();
}
