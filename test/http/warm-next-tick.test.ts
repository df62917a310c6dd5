/**
 * warmNextTick (src/lib/warm-next-tick.ts): once it has resolved, V8 has optimised
 * `process.nextTick`, which is what keeps the later boot of keygate's Fastify app from being
 * the moment it is first optimised. V8's own status bits, read in a child process started
 * with --allow-natives-syntax (the flag must be there when the process starts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const MODULE = fileURLToPath(new URL("../../src/lib/warm-next-tick.ts", import.meta.url));
/** V8's OptimizationStatus bit for "optimized" (src/runtime/runtime-test.cc), the same in Node 20 and 22. */
const OPTIMIZED = 1 << 4;

function statusAfter(code: string): { status: number; again: boolean } {
  const script = `const { warmNextTick } = await import(${JSON.stringify(MODULE)});
    ${code}
    console.log(JSON.stringify({ status: %GetOptimizationStatus(process.nextTick), again: warmNextTick() === warmNextTick() }));`;
  const run = spawnSync(process.execPath, ["--allow-natives-syntax", "--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 30_000 });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split("\n").pop()!) as { status: number; again: boolean };
}

test("warmNextTick leaves process.nextTick optimised, and runs once per process", () => {
  const cold = statusAfter("");
  assert.equal(cold.status & OPTIMIZED, 0, "a fresh process has not optimised process.nextTick yet, or this test proves nothing");
  const warm = statusAfter("await warmNextTick();");
  assert.notEqual(warm.status & OPTIMIZED, 0, `status ${warm.status.toString(2)}`);
  assert.equal(warm.again, true, "a second call returns the first call's promise");
});
