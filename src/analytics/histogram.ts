/**
 * A fixed, log-spaced latency histogram. Every node and every flush uses the same bins, so
 * histograms merge by adding counts per bin — exactly, in any order, across buckets, flushes
 * and nodes — and percentiles of a merged histogram are as precise as of a single one.
 *
 * Bin 0 holds everything under 1 µs; bin `i` ≥ 1 holds [1 µs · R^(i−1), 1 µs · R^i) with
 * R = 2^(1/8) (each bin 9.05 % wider than the last); the last bin holds 1 000 s and more.
 * A percentile is reported as its bin's geometric midpoint, so it is within ±4.5 % of the
 * true nearest-rank value (for values from 1 µs to 1 000 s).
 */

/** Values below this (in ms, i.e. 1 µs) all land in bin 0. */
export const MIN_LATENCY_MS = 0.001;
/** Bins per doubling: R = 2^(1/8). */
const PER_DOUBLING = 8;
/** 1 µs · 2^30 ≈ 1 074 s: anything slower is in the last bin. */
const DOUBLINGS = 30;
/** The index of the last bin; bins are 0 … LAST_BIN. */
export const LAST_BIN = PER_DOUBLING * DOUBLINGS + 1;
/** The largest relative error of a reported percentile: R^(1/2) − 1. */
export const PERCENTILE_RELATIVE_ERROR = 2 ** (1 / (2 * PER_DOUBLING)) - 1;

/** LOWER[i]: the lower bound of bin i; LOWER[LAST_BIN + 1] = Infinity. Computed once: binOf runs per request. */
const LOWER = Float64Array.from({ length: LAST_BIN + 2 }, (_, i) =>
  (i === 0 ? 0 : i > LAST_BIN ? Infinity : MIN_LATENCY_MS * 2 ** ((i - 1) / PER_DOUBLING)));

/** The lower bound of bin `i`, in ms. */
export const binLower = (i: number): number => LOWER[Math.min(Math.max(i, 0), LAST_BIN)]!;
/** The upper bound (exclusive) of bin `i`, in ms; Infinity for the last bin. */
export const binUpper = (i: number): number => LOWER[Math.min(Math.max(i + 1, 1), LAST_BIN + 1)]!;

/**
 * The bin a latency falls into. Negative, NaN and sub-microsecond values go to bin 0.
 *
 * @example
 * binOf(1.5); // 85: [1.448 ms, 1.579 ms)
 */
export function binOf(ms: number): number {
  if (!(ms >= MIN_LATENCY_MS)) return 0;
  if (ms === Infinity) return LAST_BIN;
  let i = Math.min(Math.floor(Math.log2(ms / MIN_LATENCY_MS) * PER_DOUBLING) + 1, LAST_BIN);
  // log2 rounds; a value a hair off a boundary must still lie inside its bin's bounds.
  if (i > 1 && ms < LOWER[i]!) i--;
  else if (ms >= LOWER[i + 1]!) i++;
  return Math.min(Math.max(i, 1), LAST_BIN);
}

/** The value a bin reports: its geometric midpoint (0 for bin 0, the lower bound for the last). */
export function binValue(i: number): number {
  if (i <= 0) return 0;
  if (i >= LAST_BIN) return binLower(LAST_BIN);
  return MIN_LATENCY_MS * 2 ** ((i - 0.5) / PER_DOUBLING);
}

/** Counts per bin. Sparse: only bins that were hit. */
export type Histogram = Map<number, number>;

/** Adds `count` observations to `bin` of `h`. */
export function addToHistogram(h: Histogram, bin: number, count: number): void {
  h.set(bin, (h.get(bin) ?? 0) + count);
}

/**
 * The nearest-rank `p`-th percentile (0 < p ≤ 100) of a histogram, as its bin's value;
 * null for an empty histogram. Four significant digits, which is finer than a bin.
 *
 * @example
 * const h: Histogram = new Map();
 * addToHistogram(h, binOf(2), 99);
 * addToHistogram(h, binOf(900), 1);
 * percentile(h, 50); // ≈ 2 (within 4.5 %)
 * percentile(h, 100); // ≈ 900
 */
export function percentile(h: Histogram, p: number): number | null {
  let total = 0;
  for (const c of h.values()) total += c;
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  const bins = [...h.keys()].sort((a, b) => a - b);
  let seen = 0;
  for (const b of bins) {
    seen += h.get(b)!;
    if (seen >= rank) return Number(binValue(b).toPrecision(4));
  }
  return Number(binValue(bins[bins.length - 1]!).toPrecision(4));
}

/** p50, p95 and p99 of a histogram, or null when it is empty. */
export function summarize(h: Histogram): { p50: number; p95: number; p99: number } | null {
  const p50 = percentile(h, 50);
  if (p50 === null) return null;
  return { p50, p95: percentile(h, 95)!, p99: percentile(h, 99)! };
}
