import type { FastifyReply, FastifyRequest } from "fastify";
import type { Analytics } from "../analytics/index.js";
import type { UsageFilter } from "../store/types.js";

/** Bytes a slow live-stream client may leave unread before events for it are dropped (and counted). */
const MAX_UNREAD = 256 * 1024;

/** What a stream's heartbeat can do: send the comment line, send an event, or end the stream. */
export interface UsageStreamControl {
  heartbeat(): void;
  send(event: string, data: string): void;
  end(): void;
}

export interface UsageStreamOptions {
  analytics: Analytics;
  filter: UsageFilter;
  /** The open streams of the routes' plugin, each one's end; ended on the server's preClose. */
  streams: Set<() => void>;
  /** The `retry:` the client is told to wait before reconnecting, ms. */
  retryMs: number;
  cacheControl: string;
  /** Runs every `analytics.heartbeatSeconds`; by default sends the heartbeat comment. */
  beat?: (stream: UsageStreamControl) => void;
}

/**
 * Answers a request with the live usage events matching `filter` as server-sent events:
 * `event: usage` per verification, `event: dropped` with a count when the client reads too
 * slowly to get them all, a comment line every heartbeat. Serves GET /v1/events and the
 * portal's per-account stream.
 */
export function streamUsage(request: FastifyRequest, reply: FastifyReply, options: UsageStreamOptions): void {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8", "cache-control": options.cacheControl,
    "x-accel-buffering": "no", "x-request-id": request.id,
  });
  res.write(`retry: ${options.retryMs}\n: connected\n\n`);
  let dropped = 0;
  let open = true;
  let heartbeat: NodeJS.Timeout | undefined;
  let unsubscribe = (): void => {};
  const end = (): void => {
    if (!open) return;
    open = false;
    clearInterval(heartbeat);
    unsubscribe();
    options.streams.delete(end);
    if (!res.writableEnded) res.end();
  };
  unsubscribe = options.analytics.subscribe(options.filter, {
    event(view) {
      if (res.writableLength > MAX_UNREAD) { dropped++; return; }
      if (dropped > 0) { res.write(`event: dropped\ndata: {"count":${dropped}}\n\n`); dropped = 0; }
      res.write(`event: usage\ndata: ${JSON.stringify(view)}\n\n`);
    },
    end,
  });
  if (!open) return; // keygate is closing: subscribe ended the stream at once
  const control: UsageStreamControl = {
    heartbeat: () => { if (res.writableLength <= MAX_UNREAD) res.write(": heartbeat\n\n"); },
    send: (event, data) => { res.write(`event: ${event}\ndata: ${data}\n\n`); },
    end,
  };
  const beat = options.beat ?? ((s: UsageStreamControl) => s.heartbeat());
  heartbeat = setInterval(() => beat(control), options.analytics.settings.heartbeatSeconds * 1000);
  options.streams.add(end);
  res.once("close", end);
}
