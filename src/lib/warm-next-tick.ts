import { setImmediate as nextTurn } from "node:timers/promises";

/** 20 turns of 2 × 1,000 calls. V8 had optimised `process.nextTick` after 5 such turns in every trial. */
const TURNS = 20;
const CALLS_PER_TURN = 1000;
const noop = (): void => {};

let warmed: Promise<void> | null = null;

/**
 * Has V8 optimise `process.nextTick` now, before a server boots, once per process.
 *
 * Why: Node's streams and HTTP server call `process.nextTick` 4–6 times per request. When V8
 * first optimised it during the boot of keygate's Fastify app (some 150 routes and their
 * schemas compiled; measured on Node 20.20), the code it made defined the tick object's
 * properties through runtime calls instead of inline stores (seen with
 * `--print-opt-code`): a call cost ~300 ns instead of ~55 ns in a scratch loop, and the
 * HTTP verify endpoint spent 35 µs of CPU per request instead of 29 µs (a throwaway harness;
 * the figures are in bench/README.md). Optimised here, while its feedback holds only these
 * plain calls, it stays fast through the boot and after. A bare Fastify app, booted the
 * same way, did not show the effect.
 *
 * Costs ~3 ms, once. Calls with and without an argument, as Node's own callers make them.
 */
export function warmNextTick(): Promise<void> {
  warmed ??= (async () => {
    for (let turn = 0; turn < TURNS; turn++) {
      for (let i = 0; i < CALLS_PER_TURN; i++) {
        process.nextTick(noop);
        process.nextTick(noop, turn);
      }
      await nextTurn();
    }
  })();
  return warmed;
}
