import { randomString, toBase62, BASE62 } from "./alphabet.js";

/** The typed prefixes of keygate's ids. */
export type IdPrefix = "key" | "acc" | "app" | "req";

/**
 * A typed, time-sortable id such as `key_0jFq3x2Lb7cGm2QeTz4Wp9`: 8 base62 characters of the
 * creation millisecond, then 14 random ones. Base62's ASCII order matches its numeric order,
 * so ids sort by creation time, which the cursor pagination relies on.
 *
 * @example
 * newId("acc"); // "acc_0jFq3x2L…"
 */
export function newId(prefix: IdPrefix, now = Date.now()): string {
  return `${prefix}_${toBase62(now, 8)}${randomString(BASE62, 14)}`;
}
