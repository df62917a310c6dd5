/**
 * `keygate serve` as a real process, and a real upstream that echoes what reaches it: for the
 * example conformance suites and any test that needs the CLI's whole start-up path.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../dist/cli/index.js", import.meta.url));
const CLOCK_PRELOAD = fileURLToPath(new URL("./clock-preload.mjs", import.meta.url));

/** The wall clock of a served keygate, which only the test moves forward (see clock-preload.mjs). */
export interface ServedClock {
  /** The served keygate's current time, in epoch ms. */
  now(): number;
  /** Moves the served keygate's clock `ms` forward; resolves once the process has applied it. */
  advance(ms: number): Promise<void>;
}

export interface ServedKeygate {
  url: string;
  logs: string[];
  /** The `keygate serve` process, for tests that signal it themselves. */
  child: ChildProcess;
  /** Resolves with the exit code (null after a signal) once the process has exited. */
  exited: Promise<number | null>;
  /** Present when started with `clock: true`. */
  clock?: ServedClock;
  stop(): Promise<void>;
}

/**
 * Starts `keygate serve --port 0` and resolves once its "keygate listening on" line says where.
 * With `clock: true` the test can move the process's clock forward (`clock.advance`), to pass
 * expiries, token lifetimes and lockout blocks without sleeping.
 */
export async function startServe(options: { config: string; dataDir: string; env?: NodeJS.ProcessEnv; args?: string[]; clock?: boolean }): Promise<ServedKeygate> {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_LOG_LEVEL: "info", ...options.env };
  for (const k of ["KEYGATE_CONFIG", "PORT", "KEYGATE_DATABASE_URL", "KEYGATE_REDIS_URL"]) if (!options.env || !(k in options.env)) delete env[k];
  const child: ChildProcess = spawn(
    process.execPath,
    [...(options.clock ? ["--import", CLOCK_PRELOAD] : []), CLI, "serve", "--port", "0", "--config", options.config, "--data", options.dataDir, ...(options.args ?? [])],
    { env, stdio: options.clock ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"] },
  );
  const logs: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(killer);
  };
  createInterface({ input: child.stderr! }).on("line", (line) => logs.push(line));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`keygate did not start within 20 s:\n${logs.join("\n")}`)), 20_000);
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`keygate exited with ${code} before listening:\n${logs.join("\n")}`)); });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg?.startsWith("keygate listening on") && entry.url) { clearTimeout(timer); resolve(entry.url); }
      } catch { /* not JSON: keep it in the log */ }
    });
  }).catch(async (e: unknown) => { await stop(); throw e; });
  return { url, logs, child, exited, stop, ...(options.clock ? { clock: servedClock(child) } : {}) };
}

/** The parent's side of clock-preload.mjs: offsets sent over IPC, each acknowledged. */
function servedClock(child: ChildProcess): ServedClock {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance: (ms) => new Promise<void>((resolve, reject) => {
      const wanted = offset + ms;
      const onMessage = (m: { type?: string; offsetMs?: number }): void => {
        if (m?.type !== "keygate-test-clock" || m.offsetMs !== wanted) return;
        clearTimeout(timer);
        child.off("message", onMessage);
        offset = wanted;
        resolve();
      };
      const timer = setTimeout(() => { child.off("message", onMessage); reject(new Error("the served keygate did not acknowledge the clock within 5 s")); }, 5000);
      child.on("message", onMessage);
      child.send({ type: "keygate-test-clock", offsetMs: wanted });
    }),
  };
}

/** What an echo upstream saw. */
export interface Echo {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  upstream: string;
}

/** An HTTP server on 127.0.0.1 that answers every request with what it received, as JSON. */
export async function startEchoUpstream(name = "upstream"): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const echo: Echo = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), upstream: name };
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(echo));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** A JSON call with the root key. */
export async function admin(base: string, rootKey: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${rootKey}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.json() };
}
