/**
 * A source of the current time in epoch milliseconds. The engine, the limiters and the
 * store receive one instead of calling `Date.now()`, so tests can freeze and advance time.
 *
 * @example
 * const clock = createManualClock(Date.parse("2026-01-01T00:00:00Z"));
 * clock.advance(15 * 60_000);
 */
export interface Clock {
  now(): number;
}

/** The wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to; for tests of expiry, windows and lockouts. */
export interface ManualClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
}

/**
 * @example
 * const clock = createManualClock(0);
 * clock.advance(1000); // clock.now() === 1000
 */
export function createManualClock(start = Date.now()): ManualClock {
  let current = start;
  return {
    now: () => current,
    set: (ms) => { current = ms; },
    advance: (ms) => { current += ms; },
  };
}
