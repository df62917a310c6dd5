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

export interface ServedKeygate {
  url: string;
  logs: string[];
  stop(): Promise<void>;
}

/** Starts `keygate serve --port 0` and resolves once its "keygate listening on" line says where. */
export async function startServe(options: { config: string; dataDir: string; env?: NodeJS.ProcessEnv; args?: string[] }): Promise<ServedKeygate> {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_LOG_LEVEL: "info", ...options.env };
  for (const k of ["KEYGATE_CONFIG", "PORT", "KEYGATE_DATABASE_URL", "KEYGATE_REDIS_URL"]) if (!options.env || !(k in options.env)) delete env[k];
  const child: ChildProcess = spawn(process.execPath, [CLI, "serve", "--port", "0", "--config", options.config, "--data", options.dataDir, ...(options.args ?? [])], { env, stdio: ["ignore", "pipe", "pipe"] });
  const logs: string[] = [];
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
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
  return { url, logs, stop };
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
