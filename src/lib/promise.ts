/** True for a thenable: a port answered asynchronously (Redis, a store) rather than at once (memory). */
export const isPromise = <T>(value: T | Promise<T>): value is Promise<T> =>
  typeof (value as { then?: unknown } | null)?.then === "function";

/**
 * A promise of what `run` answers, synchronously or not: the promise API over a
 * maybe-synchronous function (one that throws rather than rejects on bad input).
 *
 * @example
 * verify: (request) => promised(() => check(request)),
 */
export function promised<T>(run: () => T | Promise<T>): Promise<T> {
  try {
    const value = run();
    return isPromise(value) ? value : Promise.resolve(value);
  } catch (e) {
    return Promise.reject(e);
  }
}
