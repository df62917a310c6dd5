import { createKeyCodec } from "../keys/format.js";
import type { KeyCodec, KeyFormat } from "../keys/format.js";
import { secretPattern } from "./pattern.js";
import type { SecretPattern } from "./pattern.js";

/** A key found in free text: its shape matched an API's pattern and its checksum, if any, is right. */
export interface SecretMatch {
  api: string;
  key: string;
  /** Offset of the key's first character in the scanned text. */
  index: number;
  /** The environment written in the key, or null when the format does not carry one. */
  environment: string | null;
}

/**
 * Finds the keys of the configured APIs in free text. A match of an API's {@link SecretPattern}
 * counts only when the key codec accepts it, so for a format with a checksum a string of the
 * right shape whose last characters are not the CRC32 of the rest (a placeholder, a hash, a
 * truncated or mistyped key) is discarded: about one random string in 4 billion passes.
 *
 * @example
 * const scanner = createSecretScanner(keygate.config.apis);
 * for (const found of scanner.scan(fileText)) console.log(found.api, found.index);
 */
export interface SecretScanner {
  readonly patterns: readonly SecretPattern[];
  scan(text: string): SecretMatch[];
  /** Whether `candidate` is, as a whole, a well-formed key of `api` with a right checksum. */
  isKey(api: string, candidate: string): boolean;
}

export function createSecretScanner(apis: ReadonlyArray<{ id: string; keyFormat: KeyFormat }>): SecretScanner {
  const compiled = apis.map((api) => {
    const pattern = secretPattern(api.id, api.keyFormat);
    return { pattern, regex: new RegExp(pattern.regex, "g"), codec: createKeyCodec(api.keyFormat) };
  });
  const byId = new Map<string, KeyCodec>(compiled.map((c) => [c.pattern.api, c.codec]));
  // Only the native format: an importPattern describes old keys, not what the regex finds.
  const native = (codec: KeyCodec, candidate: string) => {
    const parsed = codec.parse(candidate);
    return parsed !== null && !parsed.legacy ? parsed : null;
  };

  return {
    patterns: compiled.map((c) => c.pattern),
    scan(text) {
      const found: SecretMatch[] = [];
      for (const { pattern, regex, codec } of compiled) {
        for (const m of text.matchAll(regex)) {
          const parsed = native(codec, m[0]);
          if (parsed) found.push({ api: pattern.api, key: m[0], index: m.index, environment: parsed.environment });
        }
      }
      return found.sort((a, b) => a.index - b.index);
    },
    isKey(api, candidate) {
      const codec = byId.get(api);
      return codec !== undefined && native(codec, candidate) !== null;
    },
  };
}
