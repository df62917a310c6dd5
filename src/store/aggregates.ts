import type { UsageCounters, UsagePeriod } from "./types.js";

/** Each period's bucket length in ms. Buckets are aligned to the epoch, so days are UTC days. */
export const PERIOD_MS: Readonly<Record<UsagePeriod, number>> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
export const PERIODS: readonly UsagePeriod[] = ["minute", "hour", "day"];

/** The start of the `period` bucket that `at` (epoch ms, ≥ 0) falls in. */
export const bucketOf = (period: UsagePeriod, at: number): number => at - (at % PERIOD_MS[period]);

/**
 * Calls `add` for every row a batch's counters add to: per counters, period and bin, the
 * bucket of that period its minute falls in. A row may come up more than once (two minutes of
 * one hour); an upsert-add store adds both. Hour and day rows only for counters that
 * `toHoursAndDays` accepts: a store that rolls minutes up on its own passes which it has.
 * Callbacks rather than row objects: with 10,000 keys in use, a flush added to ~90,000 rows
 * (three periods, a few bins per key), which as objects lived as long as the write and were
 * promoted to the old generation every flush.
 */
export function eachAggregate(
  counters: readonly UsageCounters[],
  add: (c: UsageCounters, period: UsagePeriod, bucketStart: number, bin: number, count: number) => void,
  toHoursAndDays: (c: UsageCounters) => boolean = () => true,
): void {
  for (const c of counters) {
    const bins = c.bins;
    for (const period of toHoursAndDays(c) ? PERIODS : MINUTE_ONLY) {
      const start = bucketOf(period, c.minute);
      for (let i = 0; i < bins.length; i += 2) add(c, period, start, bins[i]!, bins[i + 1]!);
    }
  }
}

const MINUTE_ONLY: readonly UsagePeriod[] = ["minute"];
