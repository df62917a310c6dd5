import { pino } from "pino";
import type { FastifyInstance } from "fastify";
import { ensureRootKey } from "../auth/root-key.js";
import { buildServer } from "../http/server.js";
import { buildGatewayServer } from "../http/gateway/index.js";
import { openKeygate } from "./runtime.js";
import { createMetrics } from "../ops/metrics.js";
import { tuneV8ForServing } from "../lib/serving-flags.js";
import { warmNextTick } from "../lib/warm-next-tick.js";

export interface ServeOptions {
  port?: string | undefined;
  host?: string | undefined;
  data?: string | undefined;
  config?: string | undefined;
}

function parsePort(value: string, from: string): number {
  const n = Number(value);
  if (!/^\d{1,5}$/.test(value) || n > 65535) throw new Error(`${from}: ${JSON.stringify(value)} is not a port number (0-65535)`);
  return n;
}

function banner(rootKey: string): string {
  const lines = [
    "keygate generated a root key. It is shown this once and stored only as a hash:",
    "",
    `    ${rootKey}`,
    "",
    "Use it as `Authorization: Bearer <root key>` on /v1. Save it now, or set",
    "KEYGATE_ROOT_KEY (32+ characters) to choose your own.",
  ];
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const bar = "═".repeat(width);
  return [`╔${bar}╗`, ...lines.map((l) => `║  ${l.padEnd(width - 2)}║`), `╚${bar}╝`].join("\n");
}

/** How often a draining server looks for connections that have become idle. */
const DRAIN_POLL_MS = 50;

/**
 * Stops accepting connections and waits for the requests in flight, for at most `timeoutMs`;
 * then cuts what is left, so the usage flush that follows happens before an orchestrator's
 * SIGKILL. False when something had to be cut.
 *
 * Fastify's close() only closes the keep-alive connections that are idle when it is called:
 * one that was busy stays open after its response for the whole keep-alive timeout (72 s),
 * holding the process — and the unflushed usage — for no request. So idle connections are
 * closed again as the in-flight responses finish.
 */
async function drain(servers: FastifyInstance[], timeoutMs: number, cutNow: Promise<void>): Promise<boolean> {
  const sweep = setInterval(() => { for (const s of servers) s.server.closeIdleConnections(); }, DRAIN_POLL_MS);
  let deadline: NodeJS.Timeout | undefined;
  try {
    const closed = Promise.all(servers.map((s) => s.close())).then(() => true);
    const late = new Promise<false>((resolve) => {
      deadline = setTimeout(() => resolve(false), timeoutMs);
      void cutNow.then(() => resolve(false));
    });
    const drained = await Promise.race([closed, late]);
    if (!drained) {
      for (const s of servers) s.server.closeAllConnections();
      await closed;
    }
    return drained;
  } finally {
    clearInterval(sweep);
    clearTimeout(deadline);
  }
}

/** `keygate serve`: the whole service on one port, until SIGINT or SIGTERM. */
export async function serve(options: ServeOptions): Promise<void> {
  // Both before anything else runs in this process (see each one's comment).
  tuneV8ForServing();
  await warmNextTick();
  const logger = pino({ level: process.env.KEYGATE_LOG_LEVEL ?? "info", base: { service: "keygate" } });
  const metrics = createMetrics();
  const { keygate, config, configPath, bundled, dataDir, redis } = await openKeygate({ ...options, logger, metrics });
  const port = options.port !== undefined ? parsePort(options.port, "--port")
    : process.env.PORT ? parsePort(process.env.PORT, "PORT") : config.server.port;
  const host = options.host ?? process.env.KEYGATE_HOST ?? config.server.host;

  const root = await ensureRootKey(keygate.store, process.env.KEYGATE_ROOT_KEY);
  if (root.generated) process.stderr.write(`\n${banner(root.generated)}\n\n`);

  const app = await buildServer({
    keygate, rootKeyHash: root.hash, logger, bodyLimitBytes: config.server.bodyLimitBytes, metrics,
    // With failureMode local a node serves through a Redis outage (limits per node): degraded, not unready.
    ...(redis ? { readiness: { redis: { check: () => redis.ping(), required: config.redis.failureMode === "closed" } } } : {}),
  });
  // Gateway traffic on its own port when server.gatewayPort is set (as Kong splits proxy and admin).
  const gateway = config.server.gatewayPort !== undefined ? await buildGatewayServer({ keygate, logger }) : null;
  // The first signal drains; a second cuts the requests still open and flushes at once; a
  // third exits without flushing, for when even the flush hangs (an unreachable store).
  let signals = 0;
  let cut: () => void = () => {};
  const cutNow = new Promise<void>((resolve) => { cut = resolve; });
  const onSignal = (signal: string): void => {
    signals++;
    if (signals === 1) { void shutdown(signal); return; }
    if (signals === 2) {
      logger.warn({ signal }, "second signal: cutting the requests still open and flushing usage now");
      cut();
      return;
    }
    logger.error({ signal }, "third signal: exiting without flushing usage");
    process.exit(1);
  };
  const shutdown = async (signal: string): Promise<void> => {
    const timeoutMs = config.server.shutdownTimeoutMs;
    logger.info({ signal, timeoutMs }, "shutting down: draining requests and flushing usage");
    try {
      const servers = [app, ...(gateway ? [gateway] : [])];
      const drained = await drain(servers, timeoutMs, cutNow);
      if (!drained) logger.warn({ timeoutMs }, signals > 1 ? "requests still open were cut off by a second signal" : "requests still open after server.shutdownTimeoutMs were cut off");
      await keygate.close();
      logger.info("stopped");
      process.exit(0);
    } catch (e) {
      logger.error({ err: e }, "shutdown failed");
      process.exit(1);
    }
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));

  if (gateway) {
    await gateway.listen({ port: config.server.gatewayPort, host });
    const a = gateway.server.address();
    const gatewayUrl = typeof a === "object" && a ? `http://${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}` : String(a);
    logger.info({ url: gatewayUrl, apis: [...keygate.apis.values()].filter((r) => r.config.upstream !== undefined).map((r) => r.config.id) }, `keygate gateway listening on ${gatewayUrl}`);
  }
  await app.listen({ port, host });
  const address = app.server.address();
  const url = typeof address === "object" && address ? `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}` : String(address);
  logger.info({ url, config: configPath, bundledConfig: bundled, data: dataDir, store: keygate.store.kind, redis: redis !== null, apis: [...keygate.apis.keys()], rootKey: root.source }, `keygate listening on ${url}`);
}
