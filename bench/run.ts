/**
 * Runs the benchmarks of bench/ one after another, each in a process of its own
 * (`node --import tsx bench/<name>.ts`), and ends with one table of every row each reported:
 * figure, baseline, ratio, target, PASS/MISS.
 *
 * A MISS is a finding, not a failure: the exit code is non-zero only when a benchmark crashed
 * (a non-zero exit, a signal, or running past BENCH_TIMEOUT_S, default 300 s, after which it
 * is stopped). A benchmark that needs a service that is not configured prints "skipped" and
 * is listed as such.
 *
 *   npm run bench                                   (builds dist/ first, then runs them all)
 *   node --import tsx bench/run.ts verify gateway   (only those whose name contains a filter)
 *   BENCH_JSON=1 …                                  (also writes bench/results/run-<time>.json)
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { printTable, writeJson } from "./lib.js";
import type { ChildReport, Row } from "./lib.js";

const here = dirname(fileURLToPath(import.meta.url));
/** Files of bench/ that are not benchmarks. */
const HELPERS = new Set(["lib", "run"]);
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_S ?? 300) * 1000;

interface Outcome {
  name: string;
  status: "reported" | "skipped" | "done" | "crashed";
  detail: string;
  seconds: number;
  rows: Row[];
}

const all = readdirSync(here).filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")).map((f) => f.slice(0, -3)).filter((n) => !HELPERS.has(n)).sort();
const filters = process.argv.slice(2);
const selected = filters.length ? all.filter((n) => filters.some((f) => n.includes(f))) : all;
if (selected.length === 0) {
  console.error(`bench: no benchmark matches ${filters.map((f) => JSON.stringify(f)).join(", ")}; there are: ${all.join(", ")}`);
  process.exit(2);
}

let current: ChildProcess | null = null;
// Passed on, so that the benchmark stops what it started; killed if it takes over 5 s.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    const child = current;
    if (!child || child.exitCode !== null || child.signalCode !== null) process.exit(130);
    child.once("close", () => process.exit(130));
    child.kill(signal);
    setTimeout(() => { child.kill("SIGKILL"); process.exit(130); }, 5000).unref();
  });
}

/** Copies a child's output through, line by line, and notes whether it said it skipped. */
function relay(stream: NodeJS.ReadableStream, to: NodeJS.WriteStream, onLine: (line: string) => void): void {
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    to.write(chunk);
    const lines = (partial + chunk).split("\n");
    partial = lines.pop()!;
    for (const l of lines) onLine(l);
  });
  stream.on("end", () => { if (partial) onLine(partial); });
}

async function runOne(name: string): Promise<Outcome> {
  const started = performance.now();
  console.log(`\n━━ ${name} ${"━".repeat(Math.max(0, 76 - name.length))}`);
  const child = spawn(process.execPath, ["--import", "tsx", join(here, `${name}.ts`)], {
    cwd: dirname(here), stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  current = child;
  const rows: Row[] = [];
  let skipped: string | null = null;
  child.on("message", (m: ChildReport) => { if (m.type === "rows") rows.push(...m.rows); });
  const onLine = (line: string): void => { if (skipped === null && /\bskipped\b/i.test(line)) skipped = line.trim(); };
  relay(child.stdout!, process.stdout, onLine);
  relay(child.stderr!, process.stderr, onLine);

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 5000).unref();
  }, TIMEOUT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once("close", (c, s) => resolve([c, s])));
  clearTimeout(timer);
  current = null;
  const seconds = (performance.now() - started) / 1000;

  if (timedOut) return { name, status: "crashed", detail: `stopped after ${TIMEOUT_MS / 1000} s (BENCH_TIMEOUT_S)`, seconds, rows };
  if (code !== 0) return { name, status: "crashed", detail: signal ? `killed by ${signal}` : `exit code ${code}`, seconds, rows };
  if (rows.length) return { name, status: "reported", detail: `${rows.length} rows`, seconds, rows };
  if (skipped !== null) return { name, status: "skipped", detail: skipped, seconds, rows };
  return { name, status: "done", detail: "no rows reported; see its output above", seconds, rows };
}

const outcomes: Outcome[] = [];
for (const name of selected) outcomes.push(await runOne(name));

const rows = outcomes.flatMap((o) => o.rows);
console.log(`\n━━ summary ${"━".repeat(69)}\n`);
if (rows.length) printTable(rows);
console.log("");
const width = Math.max(...outcomes.map((o) => o.name.length));
for (const o of outcomes) console.log(`${o.name.padEnd(width)}  ${o.status.padEnd(8)}  ${o.seconds.toFixed(0).padStart(4)} s  ${o.detail}`);
const targets = rows.filter((r) => r.pass !== undefined);
const missed = targets.filter((r) => r.pass === false).length;
const crashed = outcomes.filter((o) => o.status === "crashed").length;
console.log(`\n${targets.length - missed} of ${targets.length} targets met, ${missed} missed; ${crashed} benchmark(s) crashed.`);
if (process.env.BENCH_JSON === "1") {
  console.log(`results: ${writeJson("run", { at: new Date().toISOString(), node: process.version, benchmarks: outcomes })}`);
}
process.exitCode = crashed ? 1 : 0;
