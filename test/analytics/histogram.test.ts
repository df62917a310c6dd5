import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  LAST_BIN, MIN_LATENCY_MS, PERCENTILE_RELATIVE_ERROR, addToHistogram, binLower, binOf, binUpper, binValue, percentile, summarize,
} from "../../src/analytics/histogram.js";
import type { Histogram } from "../../src/analytics/histogram.js";

/** A deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Latencies spread over six orders of magnitude, log-uniformly: 10 µs to 10 s. */
const latencies = (n: number, seed: number): number[] => {
  const r = random(seed);
  return Array.from({ length: n }, () => 0.01 * 10 ** (6 * r()));
};

/** The nearest-rank percentile of raw values: the definition the histogram approximates. */
const exact = (values: number[], p: number): number => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(1, Math.ceil((p / 100) * s.length)) - 1]!;
};

const histogramOf = (values: number[]): Histogram => {
  const h: Histogram = new Map();
  for (const v of values) addToHistogram(h, binOf(v), 1);
  return h;
};

describe("latency bins", () => {
  test("every value lies within its bin's bounds, also right at the boundaries", () => {
    const values = [...latencies(20_000, 1), MIN_LATENCY_MS, 1, 2, 1024, 0.5, 999_999];
    for (let i = 1; i < LAST_BIN; i++) values.push(binLower(i), binUpper(i), binUpper(i) * (1 - 1e-15));
    for (const v of values) {
      const b = binOf(v);
      assert.ok(v >= binLower(b) && v < binUpper(b), `${v} in bin ${b} [${binLower(b)}, ${binUpper(b)})`);
    }
  });

  test("sub-microsecond, negative and non-numbers go to bin 0; beyond 1000 s to the last bin", () => {
    assert.equal(binOf(0), 0);
    assert.equal(binOf(0.0009), 0);
    assert.equal(binOf(-5), 0);
    assert.equal(binOf(Number.NaN), 0);
    assert.equal(binOf(1), 80); // [0.9306 ms, 1.024 ms)
    assert.equal(binOf(2_000_000), LAST_BIN);
    assert.equal(binOf(Infinity), LAST_BIN);
  });

  test("a bin's reported value is within the documented relative error of anything in it", () => {
    assert.ok(PERCENTILE_RELATIVE_ERROR < 0.045);
    for (let i = 1; i < LAST_BIN; i++) {
      const v = binValue(i);
      for (const x of [binLower(i), binUpper(i) * (1 - 1e-12)]) {
        assert.ok(Math.abs(v - x) / x <= PERCENTILE_RELATIVE_ERROR + 1e-12, `bin ${i}: ${v} vs ${x}`);
      }
    }
  });
});

describe("percentiles", () => {
  test("p50, p95 and p99 are within ±4.5 % of the exact nearest-rank values", () => {
    for (const seed of [1, 2, 3]) {
      const values = latencies(10_000, seed);
      const h = histogramOf(values);
      for (const p of [1, 50, 90, 95, 99, 99.9, 100]) {
        const got = percentile(h, p)!;
        const want = exact(values, p);
        assert.ok(Math.abs(got - want) / want <= 0.045, `seed ${seed} p${p}: ${got} vs exact ${want}`);
      }
    }
  });

  test("merging histograms of parts gives exactly the histogram of the whole, in any order", () => {
    const values = latencies(5000, 7);
    const whole = histogramOf(values);
    const parts = [values.slice(0, 1000), values.slice(1000, 1001), values.slice(1001, 4000), values.slice(4000)].map(histogramOf);
    const merged: Histogram = new Map();
    for (const part of parts.reverse()) for (const [bin, count] of part) addToHistogram(merged, bin, count);
    assert.deepEqual(new Map([...merged].sort(([a], [b]) => a - b)), new Map([...whole].sort(([a], [b]) => a - b)));
    assert.deepEqual(summarize(merged), summarize(whole));
  });

  test("a skewed distribution: the slow tail shows in p99 but not p50", () => {
    const h: Histogram = new Map();
    addToHistogram(h, binOf(2), 98);
    addToHistogram(h, binOf(900), 2);
    const s = summarize(h)!;
    assert.ok(Math.abs(s.p50 - 2) / 2 <= 0.045);
    assert.ok(Math.abs(s.p95 - 2) / 2 <= 0.045);
    assert.ok(Math.abs(s.p99 - 900) / 900 <= 0.045);
  });

  test("an empty histogram has no percentiles", () => {
    assert.equal(percentile(new Map(), 50), null);
    assert.equal(summarize(new Map()), null);
  });
});
