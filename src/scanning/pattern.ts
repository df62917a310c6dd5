import { createKeyCodec } from "../keys/format.js";
import type { KeyFormat } from "../keys/format.js";
import { checksumLength } from "../keys/checksum.js";

/**
 * GitHub's secret-scanning pattern fields: the secret itself and what may stand on either side
 * of it. The same fields appear in custom patterns and in what a secret-scanning partner
 * sends GitHub when it enrols a token type. Hyperscan syntax: no lookarounds.
 */
export interface GithubPatternFields {
  /** The name GitHub reports the type as; a suggestion, the operator registers the real one. */
  secretType: string;
  /** The secret's own format. */
  secretFormat: string;
  /** What comes before the secret: start of input or a non-alphanumeric character. */
  before: string;
  /** What comes after the secret: end of input or a non-alphanumeric character. */
  after: string;
}

/**
 * How an API's keys are found in free text (source code, logs, pastes).
 * `regex` decides the shape; the checksum, when the format has one, decides whether a match
 * is a key keygate could have issued: see {@link createSecretScanner}.
 */
export interface SecretPattern {
  api: string;
  /**
   * A JavaScript (also PCRE2: `grep -P`, `rg --pcre2`) regular expression whose whole match
   * is a key, with lookarounds so that a key is never matched inside a longer word.
   */
  regex: string;
  /**
   * The same without lookarounds, for RE2 tools (gitleaks, trufflehog, Go): capture group 1 is
   * the key, the whole match may include one character on either side.
   */
  portableRegex: string;
  github: GithubPatternFields;
  /** Whether the last characters of a key are a CRC32 of the rest, so matches can be checked offline. */
  checksum: boolean;
  /** `crc32-base62-6` or `crc32-hex-8`: CRC-32 (IEEE) of everything before it, encoded and padded; null without one. */
  checksumAlgorithm: string | null;
  /**
   * Whether the pattern can be found in public code without drowning in false positives: the
   * keys start with a literal head (prefix or environment) and carry a checksum, as GitHub's
   * partner program asks. Keys without either still match `regex`, but so does much else.
   */
  highPrecision: boolean;
  /** Why `highPrecision` is false, for the operator; null when it is true. */
  caveat: string | null;
}

const ALNUM = "[0-9A-Za-z]";
const NOT_ALNUM = "[^0-9A-Za-z]";
const BODY: Record<KeyFormat["alphabet"], (length: number) => string> = {
  base62: (n) => `[0-9A-Za-z]{${n}}`,
  hex: (n) => `[0-9a-f]{${n}}`,
  uuid: () => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
};

/**
 * Escapes regex syntax in a key head; of what a head may hold, only the `.` separator needs it.
 * `-` is left alone: outside a class it is literal, and `\-` is an error under JavaScript's `u` flag.
 */
const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** The distinct literal heads of an API's keys (`sk_live_`, `sk_test_`), longest first; `""` when they have none. */
export function keyHeads(format: KeyFormat): string[] {
  const codec = createKeyCodec(format);
  const heads = new Set(format.environments.map((env) => codec.head(env)));
  return [...heads].sort((a, b) => b.length - a.length || a.localeCompare(b));
}

/**
 * The regular expressions that find an API's keys in free text, derived from its key format:
 * the literal heads (prefix, separator, environment tags), then exactly the body's length in
 * its alphabet, not preceded or followed by another letter or digit.
 *
 * @example
 * const p = secretPattern("demo", { prefix: "sk", separator: "_", environments: ["live", "test"],
 *   environmentInKey: true, length: 32, alphabet: "base62", checksum: true });
 * p.regex;              // "(?<![0-9A-Za-z])(?:sk_live_|sk_test_)[0-9A-Za-z]{32}(?![0-9A-Za-z])"
 * p.github.secretFormat; // "(?:sk_live_|sk_test_)[0-9A-Za-z]{32}"
 * p.highPrecision;      // true
 */
export function secretPattern(api: string, format: KeyFormat): SecretPattern {
  // Every environment has a head or none has: environment tags are never empty.
  const heads = keyHeads(format).filter((h) => h !== "");
  const head = heads.length === 0 ? "" : heads.length === 1 ? escapeRegex(heads[0]!) : `(?:${heads.map(escapeRegex).join("|")})`;
  const secretFormat = head + BODY[format.alphabet](format.length);
  const checksum = format.checksum && format.alphabet !== "uuid";
  const caveats = [
    head === "" ? "the keys have no literal head (no prefix, no environment tag), so any string of the right length and alphabet matches" : null,
    checksum ? null : "the keys carry no checksum, so a match cannot be told from a random string of the same shape without a lookup; set keyFormat.checksum: true for new keys",
  ].filter((c): c is string => c !== null);
  return {
    api,
    regex: `(?<!${ALNUM})${secretFormat}(?!${ALNUM})`,
    portableRegex: `(?:^|${NOT_ALNUM})(${secretFormat})(?:${NOT_ALNUM}|$)`,
    github: { secretType: `${api.replace(/[^a-z0-9_]/g, "_")}_api_key`, secretFormat, before: `\\A|${NOT_ALNUM}`, after: `\\z|${NOT_ALNUM}` },
    checksum,
    checksumAlgorithm: checksum ? `crc32-${format.alphabet}-${checksumLength(format.alphabet)}` : null,
    highPrecision: caveats.length === 0,
    caveat: caveats.length ? `Low precision: ${caveats.join("; ")}.` : null,
  };
}
