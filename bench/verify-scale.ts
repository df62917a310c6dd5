/**
 * Does verifying a cached key cost the same with 1,000,000 keys in the store as with 1,000?
 *
 * Each kind of store in turn — memory, then SQLite (the production default) — with three child
 * processes, one per store size (1,000, 10,000 and 1,000,000 keys), each with its own heap (so
 * the large store's GC work is charged to the large case only) and alive together, so that
 * their timed rounds can alternate, flipping order each round. All are started with the same
 * flags and config. Each
 * holds a keygate over its store and memory limits: a few real keys (secrets known, the IP in
 * their allowlist, scope `read`) spread evenly among filler keys. Every key is a copy of one
 * made through the public API, with its own id and hash. The memory store gets them through
 * its own `insertKeys` (the path every key-creating call ends in; `keys.import` would take
 * minutes for a million keys); SQLite gets them as copies of that key's row, with a change
 * record each, as `insertKeys` writes them, made by one prepared statement in a few large
 * transactions (`insertKeys` through Kysely takes minutes for a million rows). The SQLite
 * files live in one temporary folder that the parent makes and deletes, whatever happens to
 * the children. The change poll is off (`cache.changePollMs: 0`): one process, nothing else
 * writes to the store.
 * Raw request logs are off (`analytics.rawLogSampling: 0`; the aggregates still count every
 * verification): the memory store keeps every raw log on the heap, several MB a second at
 * these rates, and the small heap's collector would then run far more often than the large
 * one's — a difference made by the logs, not by the number of keys.
 *
 * What is timed: batches of 64 verifications in flight, each of the next key of a shuffled,
 * round-robin sequence of distinct keys, each verdict checked valid. Before every timed round
 * the sequence is verified once untimed, so every key is in the LRU cache (`cache.maxKeys`,
 * default 100,000, well above the cached sequences below). The cases are compared with the
 * baseline in three separate groups of rounds, in this order, so that the large process's
 * caches, usage counters and analytics hold only what the case compared needs: the 1,000-key
 * case runs before any other key of the large store was verified.
 *
 * - small store, all its 1,000 keys in turn        — the baseline
 * - large store, 1,000 of its keys in turn         — the same working set, so only the store's
 *                                                    size differs; target ratio ≥ 0.9
 * - large store, 10,000 of its keys in turn        — against a 10,000-key store, all its keys
 *                                                    in turn: the same larger working set, only
 *                                                    the store's size differs; target ratio ≥ 0.9.
 *                                                    Against the 1,000-key baseline too, for
 *                                                    information: ten times the keys in use.
 * - large store, 200,000 of its keys in turn       — more than cache.maxKeys: round-robin over
 *                                                    an LRU too small for it misses every time,
 *                                                    so each verification reads the store. No
 *                                                    target: it shows what "cached" is worth.
 *                                                    Measured after the others (it fills the
 *                                                    large process's LRU), against fresh rounds
 *                                                    of the baseline.
 * The figure checked is the process's CPU time per verification (all its threads, so the GC's
 * helper threads count): other work on a shared 2-core machine stretches wall-clock rounds
 * far more than it changes CPU time. Wall-clock rates and the share of time spent in
 * main-thread GC pauses are printed beside it.
 *
 *   node --import tsx bench/verify-scale.ts
 *   BENCH_ROUNDS (7), BENCH_ROUND_MS (300), BENCH_SCALE_LARGE (1000000), BENCH_SCALE_COLD=0 skips the last case
 *   (so does a large store under 210,000 keys),
 *   BENCH_STORE=memory or BENCH_STORE=sqlite measures only that store (default: both, memory first)
 */
import { createHash, randomBytes } from "node:crypto";
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { PerformanceObserver } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { KeyRecord, Store, Verdict, VerifyRequest } from "../src/index.js";
import { consume, fmt, load, median, ratioRow, report, valueRow } from "./lib.js";
import type { Row } from "./lib.js";

const BENCH = "verify-scale";
const SMALL = 1_000;
const LARGE = Number(process.env.BENCH_SCALE_LARGE ?? 1_000_000);
const HOT = 10_000;
/** The baseline store for the 10,000-key working set: as many keys as that set, all of them used. */
const MID = HOT;
/** Keys verified in turn for the uncached case: twice the default cache.maxKeys. */
const COLD = process.env.BENCH_SCALE_COLD === "0" || LARGE < HOT + 200_000 ? 0 : 200_000;
const BATCH = 64;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 300);
const IP = "203.0.113.7";
type StoreKind = "memory" | "sqlite";
const STORES: StoreKind[] = process.env.BENCH_STORE === "memory" || process.env.BENCH_STORE === "sqlite" ? [process.env.BENCH_STORE] : ["memory", "sqlite"];

type CaseName = "all" | "hot" | "hot1k" | "cold";
type ToChild = { type: "run"; case: CaseName; ms: number } | { type: "exit" };
type FromChild =
  | { type: "ready"; keys: number; setupMs: number; heapMB: number; cases: CaseName[] }
  | { type: "result"; opsPerSec: number; opsPerCpuSec: number; heapMB: number; gcShare: number }
  | { type: "error"; message: string };

const shuffle = <T>(a: T[]): T[] => {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
};
const heapMB = (): number => process.memoryUsage().heapUsed / 1e6;

// ── child: one keygate over a store of `size` keys ─────────────────────────────────────────

/** The file of a size's SQLite store, in the parent's temporary folder. */
const sqliteFile = (dir: string, size: number): string => join(dir, `keygate-${size}.db`);

async function child(size: number, kind: StoreKind): Promise<void> {
  const send = (m: FromChild): void => { process.send!(m); };
  process.once("disconnect", () => process.exit(0)); // the parent is gone, whenever that happens
  const started = performance.now();
  const { createKeygate, createMemoryLockout, createMemoryRateLimiter, createMemoryStore, createSqliteStore } = await load<typeof import("../src/index.js")>("index.js");
  const file = kind === "sqlite" ? sqliteFile(process.env.BENCH_SCALE_DIR!, size) : null;
  const store: Store = file !== null ? createSqliteStore({ filename: file }) : createMemoryStore();
  const keygate = await createKeygate({
    store,
    limiter: createMemoryRateLimiter(),
    lockout: createMemoryLockout(),
    config: {
      cache: { changePollMs: 0 },
      analytics: { rawLogSampling: 0 },
      apis: [{ id: "bench", keyFormat: { prefix: "bk" }, scopes: ["read", "write"], rateLimit: { limit: 1_000_000_000, windowSeconds: 3600 } }],
    },
  });
  const codec = keygate.apis.get("bench")!.codec;
  const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

  // Every key is a copy of one made through the public API, with its own id and hash.
  const account = await keygate.accounts.create({ name: "bench", email: "bench@example.test" });
  const created = await keygate.keys.create({ api: "bench", accountId: account.id, scopes: ["read"], ipAllowlist: ["203.0.113.0/24"] });
  const template = await keygate.store.getKeyByHash(sha256(created.key));
  if (!template) throw new Error("the template key is not in the store under its SHA-256");

  // Writes one chunk of copies of the template, each with its own id, hash and start.
  type Copy = Pick<KeyRecord, "id" | "hash" | "start">;
  let insert: (copies: Copy[]) => Promise<void>;
  let done = (): void => {};
  if (file !== null) {
    const db = new Database(file);
    db.pragma("busy_timeout = 5000");
    // While filling a throwaway file: 256 MB of cache (the hash index is written in random
    // order) and no waiting for the disk.
    db.pragma("cache_size = -262144");
    db.pragma("synchronous = OFF");
    const columns = (db.pragma("table_info(keys)") as Array<{ name: string }>).map((c) => c.name).filter((c) => c !== "id" && c !== "hash" && c !== "start");
    const rest = columns.map((c) => `"${c}"`).join(", ");
    const copyRow = db.prepare(`INSERT INTO keys ("id", "hash", "start", ${rest}) SELECT ?, ?, ?, ${rest} FROM keys WHERE "id" = ?`);
    const change = db.prepare(`INSERT INTO key_changes ("hash", "at") VALUES (?, ?)`);
    const write = db.transaction((copies: Copy[]) => {
      for (const c of copies) {
        copyRow.run(c.id, c.hash, c.start, template.id);
        change.run(c.hash, template.createdAt);
      }
    });
    insert = async (copies) => { write(copies); };
    done = () => db.close();
  } else {
    insert = (copies) => keygate.store.insertKeys(copies.map((c) => ({ ...template, ...c })));
  }

  // Real keys (secrets known) spread evenly among the fillers.
  const realCount = size === SMALL || size === MID ? size : Math.min(size, HOT + COLD);
  const every = Math.max(1, Math.floor(size / realCount));
  const real: string[] = [created.key];
  const CHUNK = 10_000;
  for (let i = 1; i < size; i += CHUNK) {
    const n = Math.min(CHUNK, size - i);
    const random = randomBytes(32 * n);
    const copies: Copy[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const index = i + j;
      const isReal = index % every === 0 && real.length < realCount;
      let hash: string;
      let start = template.start;
      if (isReal) {
        const key = codec.generate("live");
        real.push(key);
        hash = sha256(key);
        start = codec.start(key);
      } else {
        hash = random.toString("hex", j * 32, j * 32 + 32);
      }
      copies[j] = { id: `key_${index.toString(36).padStart(22, "0")}`, hash, start };
    }
    await insert(copies);
  }
  done();
  shuffle(real);

  const sequences = new Map<CaseName, string[]>();
  // The uncached case's keys wait as one string until that case runs. As 200,000 strings and
  // request objects they made the large process's heap, and so its full collections, larger
  // than the small process's during the cached comparisons: a difference made by the
  // benchmark, not by the store.
  let coldKeys = "";
  if (size === SMALL || size === MID) sequences.set("all", real);
  else {
    sequences.set("hot", real.slice(0, HOT));
    sequences.set("hot1k", real.slice(0, SMALL));
    if (COLD > 0) coldKeys = real.slice(HOT, HOT + COLD).join("\n");
    real.length = 0; // its keys are in the slices and the string above
  }
  const cases: CaseName[] = [...sequences.keys(), ...(coldKeys ? ["cold" as const] : [])];
  const toRequests = (seq: string[]): VerifyRequest[] => seq.map((key) => ({ api: "bench", key, ip: IP, scopes: ["read"] }));
  const requests = new Map([...sequences].map(([name, seq]) => [name, toRequests(seq)]));
  const inFlight: Promise<Verdict>[] = new Array(BATCH);
  const batchOf = (reqs: VerifyRequest[]): (() => Promise<unknown>) => {
    let next = 0;
    return async () => {
      for (let i = 0; i < BATCH; i++) {
        inFlight[i] = keygate.verifyKey(reqs[next]!);
        if (++next === reqs.length) next = 0;
      }
      const verdicts = await Promise.all(inFlight);
      for (const v of verdicts) if (!v.valid) throw new Error(`expected a valid verdict, got ${v.code}`);
      return verdicts;
    };
  };
  const batches = new Map([...requests].map(([name, reqs]) => [name, batchOf(reqs)]));
  /** The batches of a case; the uncached case's requests are made when it first runs. */
  const batchesOf = (name: CaseName): (() => Promise<unknown>) => {
    if (name === "cold" && !batches.has(name)) {
      const reqs = toRequests(coldKeys.split("\n"));
      coldKeys = "";
      requests.set(name, reqs);
      batches.set(name, batchOf(reqs));
    }
    return batches.get(name)!;
  };
  /** Verifies every key of the case once: into the LRU, and each one checked valid. */
  const warm = async (name: CaseName): Promise<void> => {
    for (const req of requests.get(name)!) {
      const v = await keygate.verifyKey(req);
      if (!v.valid) throw new Error(`expected a valid verdict, got ${v.code}`);
    }
  };

  // Main-thread GC pauses, to tell a slower round caused by the collector from one that is not.
  let gcMs = 0;
  new PerformanceObserver((list) => { for (const e of list.getEntries()) gcMs += e.duration; }).observe({ entryTypes: ["gc"] });

  // A full collection before any timed round (children run with --expose-gc): loading a
  // million keys in seconds leaves the heap in a state a long-running node has long left —
  // until the first full collection, young-generation passes cost several times more (so a
  // plain allocation loop measured; keygate's own loop recovers only in part).
  // Both sizes get it, so only the steady state is compared.
  (globalThis as { gc?: () => void }).gc?.();
  send({ type: "ready", keys: size, setupMs: performance.now() - started, heapMB: heapMB(), cases });
  process.on("message", (m: ToChild) => {
    if (m.type === "exit") {
      void keygate.close().finally(() => process.exit(0));
      return;
    }
    void (async () => {
      if (m.case !== "cold") await warm(m.case); // the cold case is meant to miss
      const batch = batchesOf(m.case);
      const gcBefore = gcMs;
      const cpuBefore = process.cpuUsage();
      const start = performance.now();
      const end = start + m.ms;
      let ops = 0;
      do {
        for (let i = 0; i < 4; i++) consume(await batch());
        ops += 4 * BATCH;
      } while (performance.now() < end);
      const wallMs = performance.now() - start;
      const cpu = process.cpuUsage(cpuBefore);
      await new Promise((resolve) => setTimeout(resolve, 20)); // GC entries arrive on a later tick
      send({
        type: "result", opsPerSec: ops / (wallMs / 1000), opsPerCpuSec: ops / ((cpu.user + cpu.system) / 1e6),
        heapMB: heapMB(), gcShare: (gcMs - gcBefore) / wallMs,
      });
    })().catch((e: unknown) => send({ type: "error", message: (e as Error).stack ?? String(e) }));
  });
}

// ── parent: each kind of store, both sizes, rounds interleaved ─────────────────────────────

interface Worker {
  proc: ChildProcess;
  ready: Extract<FromChild, { type: "ready" }>;
  run(name: CaseName, ms: number): Promise<Extract<FromChild, { type: "result" }>>;
}

/** Every child started, so that all of them are stopped whatever happens. */
const started = new Set<ChildProcess>();

async function startWorker(size: number, kind: StoreKind, dir: string): Promise<Worker> {
  const env = { ...process.env, BENCH_SCALE_CHILD: String(size), BENCH_SCALE_STORE: kind, BENCH_SCALE_DIR: dir };
  const proc = fork(fileURLToPath(import.meta.url), [], { execArgv: [...process.execArgv, "--expose-gc"], env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  started.add(proc);
  const next = (): Promise<FromChild> => new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`the ${size}-key ${kind} child exited with ${code}`));
    proc.once("exit", onExit);
    proc.once("message", (m: FromChild) => {
      proc.off("exit", onExit);
      if (m.type === "error") reject(new Error(`${size}-key ${kind} child: ${m.message}`));
      else resolve(m);
    });
  });
  const bounded = <T>(p: Promise<T>, ms: number, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms / 1000} s`)), ms); })])
      .finally(() => clearTimeout(timer));
  };
  const ready = await bounded(next(), 180_000, `setting up ${size} keys in ${kind}`) as Worker["ready"];
  return {
    proc, ready,
    run: async (name, ms) => {
      const reply = next();
      proc.send({ type: "run", case: name, ms } satisfies ToChild);
      return await bounded(reply, ms + 60_000, `a round of ${name}`) as Extract<FromChild, { type: "result" }>;
    },
  };
}

/** Asks children to close first (a clean keygate.close()), kills those that take over 10 s. */
async function stop(procs: Iterable<ChildProcess>): Promise<void> {
  await Promise.all([...procs].map((p) => new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const killer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    p.once("exit", () => { clearTimeout(killer); resolve(); });
    if (p.connected) p.send({ type: "exit" } satisfies ToChild);
    else p.kill("SIGKILL");
  })));
}


const n = (x: number): string => x.toLocaleString("en");

/** Both sizes of one kind of store, their rows. */
async function compare(kind: StoreKind, dir: string): Promise<Row[]> {
  // Set up side by side: the small store is ready long before the large one.
  const [small, mid, large] = await Promise.all([startWorker(SMALL, kind, dir), startWorker(MID, kind, dir), startWorker(LARGE, kind, dir)]);
  try {
    for (const w of [small, mid, large]) {
      console.log(`${w.ready.keys.toLocaleString("en")}-key ${kind} store: set up in ${(w.ready.setupMs / 1000).toFixed(1)} s, heap ${w.ready.heapMB.toFixed(0)} MB`);
    }
    type Case = { label: string; worker: Worker; name: CaseName };
    const all: Case = { label: `${n(SMALL)}-key ${kind} store, all ${n(SMALL)} keys in turn`, worker: small, name: "all" };
    const same: Case = { label: `${n(LARGE)}-key ${kind} store, ${n(SMALL)} of its keys in turn`, worker: large, name: "hot1k" };
    const hot: Case = { label: `${n(LARGE)}-key ${kind} store, ${n(HOT)} of its keys in turn`, worker: large, name: "hot" };
    const allMid: Case = { label: `${n(MID)}-key ${kind} store, all ${n(MID)} keys in turn`, worker: mid, name: "all" };
    const cold: Case = { label: `${n(LARGE)}-key ${kind} store, ${n(COLD)} of its keys in turn (beyond cache.maxKeys)`, worker: large, name: "cold" };

    let largeHeap = large.ready.heapMB;
    interface Figures { cpu: number; wall: number; cpuRounds: number[]; wallRounds: number[]; gc: number }
    /** Rounds of `cases` interleaved, order flipped each round; medians per case. */
    const interleave = async (cases: Case[]): Promise<Figures[]> => {
      for (const c of cases) await c.worker.run(c.name, 1000); // warm-up: the JIT, the limiter's windows
      const results = cases.map(() => [] as Array<Extract<FromChild, { type: "result" }>>);
      for (let r = 0; r < ROUNDS; r++) {
        const order = r % 2 === 0 ? cases.map((_, i) => i) : cases.map((_, i) => cases.length - 1 - i);
        for (const i of order) {
          const x = await cases[i]!.worker.run(cases[i]!.name, ROUND_MS);
          results[i]!.push(x);
          if (cases[i]!.worker === large) largeHeap = Math.max(largeHeap, x.heapMB);
        }
      }
      return cases.map((c, i) => {
        const rs = results[i]!;
        const f: Figures = {
          cpu: median(rs.map((x) => x.opsPerCpuSec)), wall: median(rs.map((x) => x.opsPerSec)),
          cpuRounds: rs.map((x) => x.opsPerCpuSec), wallRounds: rs.map((x) => x.opsPerSec), gc: median(rs.map((x) => x.gcShare)),
        };
        const spread = (v: number[], m: number): string => `${((Math.max(...v) - Math.min(...v)) / m * 100).toFixed(0)}%`;
        console.log(`${c.label}\n    ${fmt.ns(1e9 / f.cpu)} CPU/verify (spread ${spread(f.cpuRounds, f.cpu)}), ` +
          `${fmt.ops(f.wall)} wall-clock (spread ${spread(f.wallRounds, f.wall)}), GC pauses ${(f.gc * 100).toFixed(0)}% of the time`);
        return f;
      });
    };
    const rowsFor = (c: Case, x: Figures, base: Figures, target: boolean, prefix: string, baselineName = `${n(SMALL)}-key ${kind} store`): Row[] => {
      const details = { cpuRounds: x.cpuRounds, wallRounds: x.wallRounds, baselineCpuRounds: base.cpuRounds, baselineWallRounds: base.wallRounds, gcShare: x.gc, baselineGcShare: base.gc };
      const cpu = target
        ? ratioRow(BENCH, `${prefix}, ${c.label}`, x.cpu, "verifies/CPU-s", { name: baselineName, value: base.cpu }, { atLeast: 0.9 }, details)
        : { bench: BENCH, name: `${prefix}, ${c.label}`, value: x.cpu, unit: "verifies/CPU-s", baseline: { name: baselineName, value: base.cpu }, ratio: x.cpu / base.cpu, details };
      const wall: Row = { bench: BENCH, name: "  the same, wall-clock", value: x.wall, unit: "verifies/s", baseline: { name: baselineName, value: base.wall }, ratio: x.wall / base.wall };
      return [cpu, wall];
    };

    // Separate groups, each against fresh rounds of the baseline: the 1,000 keys first, before
    // any other key of the large store is cached or counted; then the 10,000; the uncached
    // case last, as it fills the large process's LRU (and heap) with 100,000 entries.
    // The 10,000 keys against a store of those 10,000 keys (the same working set: only the
    // store's size differs, as in the first group), and, for information, against the 1,000-key
    // baseline (ten times the working set: CPU caches, not the store).
    const [a1, b] = await interleave([all, same]);
    const [a2, m2, c] = await interleave([all, allMid, hot]);
    const rows: Row[] = [
      ...rowsFor(same, b!, a1!, true, "cached verify"),
      ...rowsFor(hot, c!, m2!, true, "cached verify", `${n(MID)}-key ${kind} store`),
      ...rowsFor(hot, c!, a2!, false, "working set ×10", `${n(SMALL)}-key ${kind} store, ${n(SMALL)} keys in turn`),
    ];
    if (COLD > 0) {
      const [a3, d] = await interleave([all, cold]);
      rows.push(...rowsFor(cold, d!, a3!, false, "uncached verify"));
    }
    rows.push(valueRow(BENCH, `heap of the ${n(LARGE)}-key ${kind} process (max)`, largeHeap, "MB"));
    rows.push(valueRow(BENCH, `heap of the ${n(SMALL)}-key ${kind} process at start`, small.ready.heapMB, "MB"));
    return rows;
  } finally {
    await stop([small.proc, mid.proc, large.proc]);
  }
}

async function parent(): Promise<void> {
  const kill = (): void => { for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL"); };
  // The SQLite files of every run, in one folder made and deleted here (a killed child deletes nothing).
  const dir = STORES.includes("sqlite") ? mkdtempSync(join(tmpdir(), "keygate-bench-")) : "";
  const removeDir = (): void => { if (dir !== "") rmSync(dir, { recursive: true, force: true }); };
  process.once("exit", () => { kill(); removeDir(); });
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));
  try {
    const rows: Row[] = [];
    for (const kind of STORES) rows.push(...await compare(kind, dir));
    await report(BENCH, rows);
  } finally {
    await stop(started);
    removeDir();
  }
}

const childSize = process.env.BENCH_SCALE_CHILD;
if (childSize !== undefined) await child(Number(childSize), process.env.BENCH_SCALE_STORE === "sqlite" ? "sqlite" : "memory");
else await parent();
