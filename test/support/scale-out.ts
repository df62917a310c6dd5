/**
 * Real PostgreSQL and Redis for the scale-out tests: a throwaway database per suite, a unique
 * Redis key prefix per suite, a private redis-server that a test may kill, and a TCP proxy
 * that a test may cut. Nothing here ever stops the machine's shared servers.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import pg from "pg";
import { Redis } from "ioredis";

export const PG_URL = process.env.KEYGATE_TEST_PG_URL || undefined;
export const REDIS_URL = process.env.KEYGATE_TEST_REDIS_URL || undefined;
/** `skip` values for node:test: a visible reason when the server is not configured. */
export const PG_SKIP: string | false = PG_URL ? false : "KEYGATE_TEST_PG_URL is not set";
export const REDIS_SKIP: string | false = REDIS_URL ? false : "KEYGATE_TEST_REDIS_URL is not set";
export const PG_AND_REDIS_SKIP: string | false = PG_SKIP || REDIS_SKIP;

export const randomSuffix = (): string => randomBytes(6).toString("hex");

/** A fresh, empty database on the KEYGATE_TEST_PG_URL server, dropped (with FORCE) by `drop()`. */
export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

const withAdmin = async <T>(fn: (client: pg.Client) => Promise<T>): Promise<T> => {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};

/** `options`: the rest of the CREATE DATABASE statement, e.g. a template and a locale. */
export async function createTestDatabase(options = ""): Promise<TestDatabase> {
  if (!PG_URL) throw new Error("KEYGATE_TEST_PG_URL is not set");
  const name = `kg_test_${randomSuffix()}`;
  await withAdmin((c) => c.query(`CREATE DATABASE ${name} ${options}`));
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    name,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await withAdmin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** A unique prefix for one suite's Redis keys, so suites never see each other's counters. */
export const uniqueRedisPrefix = (what: string): string => `kgtest:${what}:${randomSuffix()}:`;

/** Deletes every key under `prefix` (SCAN, never KEYS) and returns how many there were. */
export async function deleteRedisKeys(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.del(...keys);
  } while (cursor !== "0");
  return deleted;
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns true, failing after `timeoutMs`. Returns the time waited. */
export async function waitFor(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 10_000, everyMs = 20): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * A redis-server of the test's own, on its own port, with no persistence: `stop()` is a real
 * outage (and loses every counter), `start()` brings it back on the same port.
 */
export interface PrivateRedis {
  port: number;
  url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** SIGSTOP: the server keeps its connections open but answers nothing, like a hung host. */
  pause(): void;
  /** SIGCONT after `pause()`. */
  resume(): void;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  const ping = async (): Promise<boolean> => {
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => {});
    try {
      await probe.connect();
      return (await probe.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  };
  const self: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      if (child) return;
      const started = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"], { stdio: "ignore" });
      child = started;
      started.once("exit", () => { if (child === started) child = null; });
      await waitFor(`redis-server on port ${port}`, ping, 10_000, 20);
    },
    pause() { child?.kill("SIGSTOP"); },
    resume() { child?.kill("SIGCONT"); },
    async stop() {
      const running = child;
      if (!running) return;
      child = null;
      if (running.exitCode === null) {
        const exited = new Promise<void>((resolve) => running.once("exit", () => resolve()));
        running.kill("SIGKILL");
        await exited;
      }
    },
  };
  await self.start();
  return self;
}

/**
 * A TCP proxy in front of a server (here PostgreSQL) that a test can cut, which kills every
 * open connection and refuses new ones, and restore on the same port. `onClientData` sees
 * what clients send, so a test can cut at an exact point of a conversation.
 */
export interface TcpProxy {
  port: number;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
  /** Called with each chunk a client sends, before it is forwarded; return false to cut there instead. */
  onClientData: ((chunk: Buffer) => boolean) | null;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | null = null;
  let port = 0;

  const destroyAll = (): void => {
    for (const s of sockets) s.destroy();
    sockets.clear();
  };

  const proxy: TcpProxy = {
    get port() { return port; },
    onClientData: null,
    async cut() {
      const s = server;
      server = null;
      destroyAll();
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    async restore() {
      if (server) return;
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host);
        sockets.add(client);
        sockets.add(upstream);
        const drop = (): void => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream); };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.on("data", (chunk: Buffer) => {
          if (proxy.onClientData && !proxy.onClientData(chunk)) { void proxy.cut(); return; }
          upstream.write(chunk);
        });
        upstream.pipe(client);
      });
      await new Promise<void>((resolve, reject) => {
        s.once("error", reject);
        s.listen(port, "127.0.0.1", () => { s.off("error", reject); resolve(); });
      });
      port = (s.address() as net.AddressInfo).port;
      server = s;
    },
    close: () => proxy.cut(),
  };
  await proxy.restore();
  return proxy;
}
