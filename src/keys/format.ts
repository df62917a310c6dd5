import { BASE62, HEX, bodyPattern, randomString, randomUuid } from "./alphabet.js";
import type { AlphabetName } from "./alphabet.js";
import { checksum, checksumLength } from "./checksum.js";

/** How an API's keys look on the wire. See docs/configuration.md#keyformat. */
export interface KeyFormat {
  /** Literal head of every key, e.g. `ce`; may be empty. */
  prefix: string;
  /** Put between prefix, environment tag and body: `ce` + `_` + `live` + `_` + body. */
  separator: string;
  /** Environment names; the first one is the default for new keys. */
  environments: string[];
  /** Whether the environment is written into the key (`ce_live_…`) or only stored with it. */
  environmentInKey: boolean;
  /** Body length in characters, checksum included; 36 for uuid. */
  length: number;
  alphabet: AlphabetName;
  /** Whether the last characters of the body are a CRC32 of everything before them. */
  checksum: boolean;
  /** A regular expression that imported keys of an older format match, e.g. the v1 airtime tokens. */
  importPattern?: string | undefined;
}

/** What parsing a presented key tells before any storage lookup. */
export interface ParsedKey {
  /** The environment written in the key, or null when the format does not carry one. */
  environment: string | null;
  /** True when the key matched `importPattern` rather than the native format. */
  legacy: boolean;
}

/** The longest a presented credential may be; anything longer is malformed without further work. */
export const MAX_KEY_LENGTH = 512;

/**
 * Generates, parses and describes keys of one API's format. Built once per API at start-up
 * so the hot path only runs precompiled matchers.
 *
 * @example
 * const codec = createKeyCodec({ prefix: "ce", separator: "_", environments: ["live", "test"],
 *   environmentInKey: true, length: 32, alphabet: "base62", checksum: false });
 * const key = codec.generate("live"); // "ce_live_…" (40 characters)
 * codec.parse(key);                   // { environment: "live", legacy: false }
 */
export interface KeyCodec {
  readonly format: KeyFormat;
  generate(environment: string): string;
  parse(key: string): ParsedKey | null;
  /** The non-secret start shown in listings: the head plus the first 4 body characters. */
  start(key: string): string;
  /** The head a key of `environment` starts with, e.g. `ce_live_`. */
  head(environment: string): string;
}

export function createKeyCodec(format: KeyFormat): KeyCodec {
  const heads = new Map<string, string>();
  for (const env of format.environments) {
    const parts = [format.prefix, format.environmentInKey ? env : ""].filter((p) => p !== "");
    heads.set(env, parts.length ? parts.join(format.separator) + format.separator : "");
  }
  // Longest head first so that `ck_live_` is never mistaken for a shorter overlapping head.
  const headList = [...heads.entries()].sort((a, b) => b[1].length - a[1].length);
  const csLen = format.checksum ? checksumLength(format.alphabet) : 0;
  const body = bodyPattern(format.alphabet, format.length);
  // Anchored whatever the config wrote: a pattern must match the whole key, not a part of it.
  const legacy = format.importPattern ? new RegExp(`^(?:${format.importPattern})$`) : null;
  const alphabetChars = format.alphabet === "hex" ? HEX : BASE62;

  const headOf = (env: string): string => {
    const h = heads.get(env);
    if (h === undefined) throw new Error(`unknown environment ${env}`);
    return h;
  };

  const parseNative = (key: string): ParsedKey | null => {
    for (const [env, head] of headList) {
      if (!key.startsWith(head)) continue;
      const rest = key.slice(head.length);
      if (!body.test(rest)) continue;
      if (csLen > 0) {
        const cut = key.length - csLen;
        if (checksum(key.slice(0, cut), format.alphabet) !== key.slice(cut)) continue;
      }
      return { environment: format.environmentInKey ? env : null, legacy: false };
    }
    return null;
  };

  return {
    format,
    head: headOf,
    generate(environment) {
      const head = headOf(environment);
      if (format.alphabet === "uuid") return head + randomUuid();
      const random = head + randomString(alphabetChars, format.length - csLen);
      return csLen > 0 ? random + checksum(random, format.alphabet) : random;
    },
    parse(key) {
      if (key.length === 0 || key.length > MAX_KEY_LENGTH) return null;
      const native = parseNative(key);
      if (native) return native;
      if (legacy && legacy.test(key)) return { environment: null, legacy: true };
      return null;
    },
    start(key) {
      let n = 4;
      for (const [, head] of headList) {
        if (head !== "" && key.startsWith(head)) { n = head.length + 4; break; }
      }
      // A copy, not a slice: V8 makes slices of 13+ characters views into their parent string,
      // which would keep the whole secret alive in memory for as long as the record lives.
      return Buffer.from(key.slice(0, n), "utf8").toString("utf8");
    },
  };
}
