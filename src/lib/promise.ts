/** True for a thenable: a port answered asynchronously (Redis, a store) rather than at once (memory). */
export const isPromise = <T>(value: T | Promise<T>): value is Promise<T> =>
  typeof (value as { then?: unknown } | null)?.then === "function";
