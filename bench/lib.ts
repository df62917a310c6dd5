/**
 * Helpers shared by the benchmarks: a timing loop, the results table and optional JSON output.
 *
 * Every speed target is a ratio against a baseline measured in the same process and run, so
 * a busy or slow machine moves both sides; absolute figures are printed for information and
 * checked against their target too, but a miss is reported, never thrown. The exit code stays
 * 0 unless a benchmark itself fails.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";
import type { Redis } from "ioredis";

const root = dirname(dirname(fileURLToPath(import.meta.url)));

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path, ext));
    else if (entry.name.endsWith(ext)) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

let announced = false;

/**
 * Imports a module of keygate as it runs in production: compiled by `npm run build` into
 * dist/ (which `npm run bench` does first). Through tsx, src/ would carry esbuild's `__name`
 * helper, called for every closure created on the hot path, and measure some 10% slower
 * than what ships. BENCH_SOURCE=src uses src/ anyway; a missing dist/ falls back to it.
 *
 * @example
 * const { createKeygate } = await load<typeof import("../src/index.js")>("index.js");
 */
export async function load<T>(module: string): Promise<T> {
  const dist = join(root, "dist", module);
  const useDist = process.env.BENCH_SOURCE !== "src" && existsSync(dist);
  if (!announced) {
    announced = true;
    if (useDist && newestMtime(join(root, "src"), ".ts") > newestMtime(join(root, "dist"), ".js")) {
      console.warn("bench: dist/ is older than src/; run `npm run build` (or `npm run bench`) to measure the current code");
    }
    if (!useDist) console.warn(`bench: measuring src/ through tsx${existsSync(dist) ? "" : " (no dist/: run `npm run build`)"}`);
  }
  const file = useDist ? dist : join(root, "src", module.replace(/\.js$/, ".ts"));
  return (await import(pathToFileURL(file).href)) as T;
}

/** Written to by every timed call so the JIT cannot drop the work as dead code. */
export let sink: unknown = null;
export const consume = (value: unknown): void => { sink = value; };

export interface TimingOptions {
  /** Untimed calls first, so the JIT has compiled the hot path. Default 1000 ms. */
  warmupMs?: number;
  /** Timed rounds; the median is reported. Default 7. */
  rounds?: number;
  /** Length of one round. Default 500 ms. */
  roundMs?: number;
}

/** One case of a comparison: `fn` performs `opsPerCall` operations (sync or async). */
export interface Case {
  fn: () => unknown;
  /** Awaited when true; a sync baseline is timed without an await per call. */
  async?: boolean;
  /** Operations one call performs, e.g. 64 for a batch of 64 concurrent verifies. Default 1. */
  opsPerCall?: number;
  /** Calls between two clock reads. Default 256 (sync) or 32 (async). */
  callsPerCheck?: number;
}

export interface Measurement {
  /** Median over rounds, operations per second. */
  opsPerSec: number;
  /** Median cost of one operation, nanoseconds. */
  nsPerOp: number;
  /** Each round's operations per second, in the order run. */
  rounds: number[];
  /** (max − min) / median over the rounds: how noisy the figure is. */
  spread: number;
}

export const median = (values: number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** Runs `c` for about `ms` milliseconds; returns operations per second. */
async function runFor(c: Case, ms: number): Promise<number> {
  const per = c.callsPerCheck ?? (c.async ? 32 : 256);
  const ops = c.opsPerCall ?? 1;
  let calls = 0;
  const start = performance.now();
  const end = start + ms;
  let now = start;
  if (c.async) {
    const fn = c.fn as () => Promise<unknown>;
    do {
      for (let i = 0; i < per; i++) sink = await fn();
      calls += per;
      now = performance.now();
    } while (now < end);
  } else {
    const fn = c.fn;
    do {
      for (let i = 0; i < per; i++) sink = fn();
      calls += per;
      now = performance.now();
    } while (now < end);
  }
  return (calls * ops) / ((now - start) / 1000);
}

/**
 * Times several cases with their rounds interleaved (A B A B …, the order flipping each
 * round), so that noise from other processes on the machine falls on every case alike and
 * the ratios between them stay meaningful. Each case is warmed up first.
 */
export async function compare<K extends string>(cases: Record<K, Case>, options: TimingOptions = {}): Promise<Record<K, Measurement>> {
  const { warmupMs = 1000, rounds = 7, roundMs = 500 } = options;
  const names = Object.keys(cases) as K[];
  for (const n of names) await runFor(cases[n], warmupMs);
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    for (const n of order) samples[n].push(await runFor(cases[n], roundMs));
  }
  const out = {} as Record<K, Measurement>;
  for (const n of names) {
    const s = samples[n];
    const m = median(s);
    out[n] = { opsPerSec: m, nsPerOp: 1e9 / m, rounds: s, spread: (Math.max(...s) - Math.min(...s)) / m };
  }
  return out;
}

/** Times one case on its own. */
export async function measure(c: Case, options: TimingOptions = {}): Promise<Measurement> {
  return (await compare({ only: c }, options)).only;
}

/** A target a figure is checked against; a miss is reported, not thrown. */
export type Target =
  | { atLeast: number; atMost?: undefined }
  | { atMost: number; atLeast?: undefined }
  | { atLeast: number; atMost: number };

export interface Row {
  /** The benchmark file, e.g. "verify-inprocess". */
  bench: string;
  /** What was measured, e.g. "verifyKey, sequential awaits". */
  name: string;
  /** The figure checked against the target: a ratio when there is a baseline, else `value`. */
  value: number;
  unit: string;
  baseline?: { name: string; value: number } | undefined;
  /** value / baseline.value, when there is a baseline. */
  ratio?: number | undefined;
  /** Checked against the ratio when there is a baseline, else against the value. */
  target?: Target | undefined;
  pass?: boolean | undefined;
  /** Free-form extra figures for the JSON output (ns/op, spread, sizes…). */
  details?: Record<string, unknown> | undefined;
}

export const meets = (x: number, t: Target): boolean =>
  (t.atLeast === undefined || x >= t.atLeast) && (t.atMost === undefined || x <= t.atMost);

/** A row comparing `value` with `baseline`; the target applies to their ratio. */
export function ratioRow(bench: string, name: string, value: number, unit: string, baseline: { name: string; value: number }, target: Target, details?: Record<string, unknown>): Row {
  const ratio = value / baseline.value;
  return { bench, name, value, unit, baseline, ratio, target, pass: meets(ratio, target), details };
}

/** A row comparing `value` with `baseline` for information: no target. */
export function infoRow(bench: string, name: string, value: number, unit: string, baseline: { name: string; value: number }, details?: Record<string, unknown>): Row {
  return { bench, name, value, unit, baseline, ratio: value / baseline.value, details };
}

/** Deletes every Redis key a benchmark wrote under `prefix`, then disconnects. */
/**
 * Every request a timed run counted as answered went through the rate limiter: `consumed`
 * (limit − remaining, read after the run) is at least `answered`. A fixed window that ended
 * during the run (its reset moved) restarted the count, so then it cannot be checked: said, not
 * thrown.
 */
export function checkAllLimited(who: string, window: { resetBefore: unknown; resetAfter: unknown }, consumed: number, answered: number): void {
  if (window.resetAfter !== window.resetBefore) {
    console.warn(`bench: ${who}: the rate limit's window ended during the run, so its count cannot be checked against the answers`);
  } else if (!(consumed >= answered)) {
    throw new Error(`${who}: only ${consumed} requests reached the rate limiter, but ${answered} were answered in the timed runs`);
  }
}

export async function dropRedisPrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  redis.disconnect();
}

/** A row with an absolute figure and, optionally, a target for it. */
export function valueRow(bench: string, name: string, value: number, unit: string, target?: Target, details?: Record<string, unknown>): Row {
  return { bench, name, value, unit, target, pass: target ? meets(value, target) : undefined, details };
}

const fmtNum = (v: number): string => {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString("en");
  if (Math.abs(v) >= 1) return v.toFixed(2);
  return v.toPrecision(3);
};
const fmtTarget = (t: Target | undefined): string => {
  if (!t) return "";
  if (t.atLeast !== undefined && t.atMost !== undefined) return `${fmtNum(t.atLeast)}..${fmtNum(t.atMost)}`;
  return t.atLeast !== undefined ? `>= ${fmtNum(t.atLeast)}` : `<= ${fmtNum(t.atMost!)}`;
};

/** Prints rows as a table: figure, baseline, ratio, target, PASS/MISS. */
export function printTable(rows: Row[], out: (line: string) => void = (l) => console.log(l)): void {
  const header = ["bench", "measured", "figure", "baseline", "ratio", "target", "result"];
  const body = rows.map((r) => [
    r.bench,
    r.name,
    `${fmtNum(r.value)} ${r.unit}`,
    r.baseline ? `${fmtNum(r.baseline.value)} ${r.unit} (${r.baseline.name})` : "",
    r.ratio !== undefined ? r.ratio.toFixed(3) : "",
    r.target ? `${r.ratio !== undefined ? "ratio " : ""}${fmtTarget(r.target)}` : "",
    r.pass === undefined ? "" : r.pass ? "PASS" : "MISS",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd();
  out(line(header));
  out(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) out(line(b));
}

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), "results");

/** Writes `data` to bench/results/<name>-<timestamp>.json (the folder is git-ignored). */
export function writeJson(name: string, data: unknown): string {
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `${name}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
  return file;
}

/** Message a benchmark run as a child of bench/run.ts sends its parent. */
export interface ChildReport { type: "rows"; rows: Row[] }

/**
 * Ends a benchmark: prints its table, hands the rows to bench/run.ts when run by it, and
 * otherwise writes them as JSON when BENCH_JSON=1.
 */
export async function report(bench: string, rows: Row[]): Promise<void> {
  console.log("");
  printTable(rows);
  if (process.send) {
    const msg: ChildReport = { type: "rows", rows };
    await new Promise<void>((resolve, reject) => process.send!(msg, undefined, {}, (e) => (e ? reject(e) : resolve())));
  } else if (process.env.BENCH_JSON === "1") {
    console.log(`results: ${writeJson(bench, { bench, at: new Date().toISOString(), node: process.version, rows })}`);
  }
}

/** Figures for log lines: 1,234,567 and 812 ns. */
export const fmt = {
  ops: (v: number): string => `${Math.round(v).toLocaleString("en")}/s`,
  ns: (v: number): string => `${v.toFixed(0)} ns`,
  num: fmtNum,
};

// ── HTTP load (verify-http.ts, gateway.ts) ─────────────────────────────────────────────────

/** Every child process a benchmark starts, killed when it exits, however it exits. */
export const children = new Set<ChildProcess>();
process.once("exit", () => { for (const c of children) c.kill("SIGKILL"); });

/** What one autocannon run measured. Latencies in milliseconds, of 2xx responses only. */
export interface LoadFigures {
  duration: number;
  ok: number;
  non2xx: number;
  errors: number;
  p50: number;
  p99: number;
  /** The load generator's CPU time over the run's wall time: near 1, it was the bottleneck. */
  loadCpu: number;
}

/** Run by `node -e` in the child: autocannon, with every 2xx response's latency kept. */
const LOAD_GENERATOR = `
const autocannon = (await import("autocannon")).default;
const o = JSON.parse(process.env.BENCH_LOAD);
const lat = [];
const cpu = process.cpuUsage();
const instance = autocannon({ ...o, excludeErrorStats: true });
instance.on("response", (_c, status, _b, ms) => { if (status >= 200 && status < 300) lat.push(ms); });
const r = await instance;
const used = process.cpuUsage(cpu);
const s = Float64Array.from(lat).sort();
const pct = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(s.length * p))] : NaN);
process.stdout.write(JSON.stringify({ duration: r.duration, ok: r["2xx"], non2xx: r.non2xx, errors: r.errors + r.timeouts,
  p50: pct(0.5), p99: pct(0.99), loadCpu: (used.user + used.system) / 1e6 / r.duration }));
`;

/**
 * One autocannon run (`options`: url, method, headers, body, connections, pipelining,
 * duration) in a child process of its own, so that the load generator shares no event loop
 * with the server under load; killed if it overruns by 20 s.
 */
export async function runLoad(options: Record<string, unknown> & { duration: number }): Promise<LoadFigures> {
  const child = spawn(process.execPath, ["--input-type=module", "-e", LOAD_GENERATOR], {
    cwd: root, env: { ...process.env, BENCH_LOAD: JSON.stringify(options) }, stdio: ["ignore", "pipe", "inherit"],
  });
  children.add(child);
  const killer = setTimeout(() => child.kill("SIGKILL"), (options.duration + 20) * 1000);
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => { out += d; });
  const code = await new Promise<number | null>((resolve) => child.once("close", (c) => resolve(c)));
  clearTimeout(killer);
  children.delete(child);
  if (code !== 0) throw new Error(`load generator exited with ${code}: ${out}`);
  return JSON.parse(out) as LoadFigures;
}

/** Asks a forked child to stop (`message`), kills it when it has not exited after 5 s. */
export function stopChild(proc: ChildProcess, message: unknown = "stop"): Promise<void> {
  return new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const killer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    proc.once("exit", () => { clearTimeout(killer); children.delete(proc); resolve(); });
    proc.send(message as string);
  });
}
