/**
 * A real upstream for the gateway tests and benchmark: a node:http server on 127.0.0.1 that
 * echoes what reaches it, streams a large body slowly, hangs, or hashes an upload as it
 * arrives; a port with nothing listening on it; and an in-process keygate listening on real
 * ports in front of it.
 */
import { createHash } from "node:crypto";
import { createServer, request as httpRequest } from "node:http";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { createKeygate } from "../../src/keygate.js";
import type { CreateKeyInput, Keygate } from "../../src/keygate.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import type { Clock } from "../../src/lib/clock.js";
import type { Store } from "../../src/store/types.js";
import { buildServer } from "../../src/http/server.js";
import { buildGatewayServer } from "../../src/http/gateway/index.js";
import { sha256Hex } from "../../src/keys/hash.js";

/** What the echo endpoint saw. */
export interface Echo {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  upstream: string;
}

export interface Upstream {
  url: string;
  /** TCP connections accepted so far: keep-alive keeps this low. */
  connections(): number;
  /** Requests that reached it so far. */
  requestCount(): number;
  /** The method and target of the latest requests (up to 10,000), oldest first: `GET /orders?x=1`. */
  requests(): readonly string[];
  /** Resolves when the next /upload request delivers its first chunk. */
  firstUploadChunk(): Promise<void>;
  /** Whether the /big response of the current request has been written completely. */
  bigFinished(): boolean;
  close(): Promise<void>;
}

export const BIG_CHUNK = 256 * 1024;
export const BIG_CHUNKS = 32; // 8 MiB in all

/** The bytes /big sends: chunk i is filled with byte i. */
export const bigChunk = (i: number): Buffer => Buffer.alloc(BIG_CHUNK, i % 256);

/**
 * Endpoints: `/big` (8 MiB in 256 KiB chunks, 15 ms apart), `/hang` (never answers),
 * `/upload` (answers `{bytes, sha256}` of the body once it has all of it), `/status/:n`
 * (answers status n, with X-RateLimit-* of its own), anything else echoes as JSON
 * ({@link Echo}); under `/hop-by-hop` the echo also carries hop-by-hop fields a proxy must
 * not pass on.
 */
export async function startUpstream(name = "upstream"): Promise<Upstream> {
  let connections = 0;
  // Bounded, as the benchmark sends millions through it.
  let requests: string[] = [];
  let requestCount = 0;
  let bigDone = false;
  let uploadWaiters: Array<() => void> = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    requestCount++;
    requests.push(`${req.method ?? ""} ${path}`);
    if (requests.length > 20_000) requests = requests.slice(-10_000);
    if (path.startsWith("/hang")) return; // no answer, ever
    if (path.startsWith("/big")) {
      bigDone = false;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(BIG_CHUNK * BIG_CHUNKS) });
      let i = 0;
      const next = (): void => {
        if (res.destroyed) return;
        res.write(bigChunk(i++));
        if (i === BIG_CHUNKS) { bigDone = true; res.end(); return; }
        setTimeout(next, 15);
      };
      next();
      return;
    }
    if (path.startsWith("/upload")) {
      const hash = createHash("sha256");
      let bytes = 0;
      req.on("data", (c: Buffer) => {
        if (bytes === 0) { const w = uploadWaiters; uploadWaiters = []; for (const f of w) f(); }
        bytes += c.length;
        hash.update(c);
      });
      req.on("end", () => {
        res.setHeader("content-type", "application/json");
        res.end(JSON.stringify({ bytes, sha256: hash.digest("hex"), contentLength: req.headers["content-length"] ?? null }));
      });
      return;
    }
    const status = /^\/status\/(\d{3})/.exec(path);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const echo: Echo = { method: req.method ?? "", path, headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), upstream: name };
      res.statusCode = status ? Number(status[1]) : 200;
      res.setHeader("content-type", "application/json");
      if (status) {
        // An upstream with rate-limit headers of its own: keygate's must win for its keys.
        res.setHeader("x-ratelimit-limit", "999");
        res.setHeader("x-ratelimit-remaining", "998");
      }
      // Headers a careless upstream might send: keygate's own must win, hop-by-hop must go.
      res.setHeader("x-request-id", "upstream-chose-this");
      res.setHeader("x-upstream", name);
      if (path.startsWith("/hop-by-hop")) {
        // Connection names a field as hop-by-hop (RFC 9110 §7.6.1); the others always are.
        res.setHeader("connection", "keep-alive, x-upstream-hop");
        res.setHeader("x-upstream-hop", "for the next hop only");
        res.setHeader("proxy-connection", "keep-alive");
        res.setHeader("x-end-to-end", "kept");
      }
      res.end(JSON.stringify(echo));
    });
  });
  server.on("connection", () => { connections++; });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    requestCount: () => requestCount,
    requests: () => requests.slice(-10_000),
    firstUploadChunk: () => new Promise<void>((r) => uploadWaiters.push(r)),
    bigFinished: () => bigDone,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** A URL on 127.0.0.1 where nothing listens: a port just freed. */
export async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

/** The base URL a listening Fastify/HTTP server answers on. */
export const urlOf = (address: string | AddressInfo | null): string => {
  if (!address || typeof address === "string") throw new Error(`not listening on TCP: ${String(address)}`);
  return `http://127.0.0.1:${address.port}`;
};

/** A response read whole by {@link rawRequest}. */
export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One request over node:http, for what fetch will not send: hop-by-hop fields, several
 * values of one field, an absolute-form target. A fresh connection each time.
 */
export function rawRequest(base: string, options: { method?: string; path: string; headers?: OutgoingHttpHeaders; body?: string }): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: options.method ?? "GET", path: options.path, headers: options.headers, agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${base}${options.path} within 5 s`)));
    req.on("error", reject);
    req.end(options.body);
  });
}

/** The root key of every {@link startGateway} keygate. */
export const ROOT_KEY = "gateway-test-root-key-0123456789abcdefghij";

/** An in-process keygate listening on 127.0.0.1, its gateway in front of a real upstream. */
export interface RunningGateway {
  keygate: Keygate;
  /** keygate's main port: the admin API, and the gateway too unless `server.gatewayPort` is set. */
  url: string;
  /** Where gateway traffic goes: the gateway's own port when `server.gatewayPort` is set, else `url`. */
  gatewayUrl: string;
  /** An account to own keys. */
  accountId: string;
  /** A new key of the first API for {@link accountId}; `input` overrides. */
  key(input?: Partial<CreateKeyInput>): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

/**
 * Builds keygate in-process (memory store, real clock, background timers off) with `config`
 * and listens on 127.0.0.1:0: the main server of `buildServer`, plus `buildGatewayServer` on
 * a port of its own when the config sets `server.gatewayPort` (give 0); `options.store`
 * replaces the memory store. Throws as they do,
 * e.g. a ConfigError for colliding routes, after releasing what it built.
 */
export async function startGateway(config: Record<string, unknown> & { apis: unknown[] }, options: { store?: Store; clock?: Clock } = {}): Promise<RunningGateway> {
  const keygate = await createKeygate({
    store: options.store ?? createMemoryStore(),
    ...(options.clock ? { clock: options.clock } : {}),
    config: { cache: { changePollMs: 0 }, usage: { flushIntervalMs: 600_000 }, analytics: { flushIntervalMs: 600_000 }, ...config },
  });
  const servers: FastifyInstance[] = [];
  // A test that failed half-way may leave a request open: it gets a second, then is cut, so
  // that a failing test fails instead of hanging the run.
  const close = async (): Promise<void> => {
    await Promise.all(servers.map(async (s) => {
      const cut = setTimeout(() => s.server.closeAllConnections(), 1000);
      await s.close();
      clearTimeout(cut);
    }));
    await keygate.close();
  };
  try {
    const main = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY), bodyLimitBytes: keygate.config.server.bodyLimitBytes });
    servers.push(main);
    await main.listen({ port: 0, host: "127.0.0.1" });
    let gatewayUrl = urlOf(main.server.address());
    if (keygate.config.server.gatewayPort !== undefined) {
      const gateway = await buildGatewayServer({ keygate });
      servers.push(gateway);
      await gateway.listen({ port: 0, host: "127.0.0.1" });
      gatewayUrl = urlOf(gateway.server.address());
    }
    const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
    const api = keygate.config.apis[0]!.id;
    return {
      keygate,
      url: urlOf(main.server.address()),
      gatewayUrl,
      accountId: account.id,
      key: async (input = {}) => {
        const created = await keygate.keys.create({ api, accountId: account.id, ...input });
        return { id: created.id, key: created.key };
      },
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
