/**
 * A real upstream for the gateway tests and benchmark: a node:http server on 127.0.0.1 that
 * echoes what reaches it, streams a large body slowly, hangs, or hashes an upload as it
 * arrives; and a port with nothing listening on it.
 */
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";

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
 * (answers status n), anything else echoes as JSON ({@link Echo}).
 */
export async function startUpstream(name = "upstream"): Promise<Upstream> {
  let connections = 0;
  let bigDone = false;
  let uploadWaiters: Array<() => void> = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (path.startsWith("/hang")) return; // no answer, ever
    if (path.startsWith("/big")) {
      bigDone = false;
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(BIG_CHUNK * BIG_CHUNKS) });
      let i = 0;
      const next = (): void => {
        if (res.destroyed) return;
        if (i === BIG_CHUNKS) { bigDone = true; res.end(); return; }
        res.write(bigChunk(i++));
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
      // Headers a careless upstream might send: keygate's own must win, hop-by-hop must go.
      res.setHeader("x-request-id", "upstream-chose-this");
      res.setHeader("x-upstream", name);
      res.end(JSON.stringify(echo));
    });
  });
  server.on("connection", () => { connections++; });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
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
