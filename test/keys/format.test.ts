/**
 * Key formats: what `createKeyCodec` generates for each alphabet and layout, what it accepts
 * back, and that the randomness of a key body is uniform over its alphabet.
 */
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BASE62, HEX, randomString } from "../../src/keys/alphabet.js";
import { checksum } from "../../src/keys/checksum.js";
import { createKeyCodec, MAX_KEY_LENGTH } from "../../src/keys/format.js";
import type { KeyFormat } from "../../src/keys/format.js";

const format = (over: Partial<KeyFormat>): KeyFormat => ({
  prefix: "", separator: "_", environments: ["live", "test"], environmentInKey: true,
  length: 32, alphabet: "base62", checksum: false, ...over,
});

/** The seed formats: airtime v2 (`ce_live_` + 32 base62), email validation (`ck_live_` + 40 hex), top-up (bare uuid). */
const AIRTIME = createKeyCodec(format({ prefix: "ce", length: 32, alphabet: "base62" }));
const EMAIL = createKeyCodec(format({ prefix: "ck", length: 40, alphabet: "hex" }));
const TOPUP = createKeyCodec(format({ environments: ["sandbox", "production"], environmentInKey: false, length: 36, alphabet: "uuid" }));
const PAYMENTS = createKeyCodec(format({ prefix: "SK", environments: ["live"], environmentInKey: false, length: 40, checksum: true }));
const HEX_CHECKSUM = createKeyCodec(format({ prefix: "hk", length: 40, alphabet: "hex", checksum: true }));

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Replaces the character at `i` with a different character of `alphabet`. */
const substitute = (key: string, i: number, alphabet: string): string => {
  const current = key[i]!;
  const other = alphabet[(alphabet.indexOf(current) + 1 + Math.floor(Math.random() * (alphabet.length - 1))) % alphabet.length]!;
  assert.notEqual(other, current);
  return key.slice(0, i) + other + key.slice(i + 1);
};

describe("key generation", () => {
  test("base62 keys with the environment in the key are the prefix, environment and 32 characters: 40 in all", () => {
    for (let i = 0; i < 200; i++) {
      const live = AIRTIME.generate("live");
      assert.match(live, /^ce_live_[0-9A-Za-z]{32}$/);
      assert.equal(live.length, 40);
      assert.match(AIRTIME.generate("test"), /^ce_test_[0-9A-Za-z]{32}$/);
    }
  });

  test("hex keys are the prefix, environment and 40 lower-case hex characters", () => {
    for (let i = 0; i < 200; i++) {
      const key = EMAIL.generate("live");
      assert.match(key, /^ck_live_[0-9a-f]{40}$/);
      assert.equal(key.length, 48);
      assert.match(EMAIL.generate("test"), /^ck_test_[0-9a-f]{40}$/);
    }
  });

  test("uuid keys without prefix or environment are bare version-4 UUIDs", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const key = TOPUP.generate("production");
      assert.match(key, UUID_V4);
      seen.add(key);
    }
    assert.equal(seen.size, 200);
    assert.match(TOPUP.generate("sandbox"), UUID_V4);
  });

  test("uuid keys can carry a prefix and the environment", () => {
    const codec = createKeyCodec(format({ prefix: "tk", alphabet: "uuid", length: 36 }));
    const key = codec.generate("test");
    assert.equal(key.slice(0, 8), "tk_test_");
    assert.match(key.slice(8), UUID_V4);
    assert.deepEqual(codec.parse(key), { environment: "test", legacy: false });
  });

  test("base62 keys with a checksum end in the 6-character CRC32 of everything before it", () => {
    for (let i = 0; i < 200; i++) {
      const key = PAYMENTS.generate("live");
      assert.match(key, /^SK_[0-9A-Za-z]{40}$/);
      assert.equal(key.slice(-6), checksum(key.slice(0, -6), "base62"));
    }
  });

  test("hex keys with a checksum end in the 8-hex-character CRC32 of everything before it", () => {
    for (let i = 0; i < 200; i++) {
      const key = HEX_CHECKSUM.generate("live");
      assert.match(key, /^hk_live_[0-9a-f]{40}$/);
      assert.equal(key.slice(-8), checksum(key.slice(0, -8), "hex"));
    }
  });

  test("keys without the environment in the key start with the prefix only", () => {
    const codec = createKeyCodec(format({ prefix: "ce", environmentInKey: false }));
    assert.match(codec.generate("live"), /^ce_[0-9A-Za-z]{32}$/);
    assert.match(codec.generate("test"), /^ce_[0-9A-Za-z]{32}$/);
    assert.equal(codec.head("test"), "ce_");
  });

  test("keys without a prefix start with the environment, and the separator is configurable", () => {
    assert.match(createKeyCodec(format({})).generate("test"), /^test_[0-9A-Za-z]{32}$/);
    assert.match(createKeyCodec(format({ prefix: "sk", separator: "-" })).generate("live"), /^sk-live-[0-9A-Za-z]{32}$/);
    assert.match(createKeyCodec(format({ prefix: "sk", separator: "" })).generate("live"), /^sklive[0-9A-Za-z]{32}$/);
    assert.match(createKeyCodec(format({ environmentInKey: false })).generate("live"), /^[0-9A-Za-z]{32}$/);
  });

  test("head() names the literal start of each environment's keys", () => {
    assert.equal(AIRTIME.head("live"), "ce_live_");
    assert.equal(AIRTIME.head("test"), "ce_test_");
    assert.equal(TOPUP.head("sandbox"), "");
  });

  test("generating a key for an undeclared environment throws", () => {
    assert.throws(() => AIRTIME.generate("prod"), /unknown environment prod/);
  });
});

describe("key parsing", () => {
  test("every generated key parses back with its environment", () => {
    for (const env of ["live", "test"]) {
      for (let i = 0; i < 100; i++) {
        assert.deepEqual(AIRTIME.parse(AIRTIME.generate(env)), { environment: env, legacy: false });
        assert.deepEqual(EMAIL.parse(EMAIL.generate(env)), { environment: env, legacy: false });
        assert.deepEqual(HEX_CHECKSUM.parse(HEX_CHECKSUM.generate(env)), { environment: env, legacy: false });
      }
    }
    assert.deepEqual(TOPUP.parse(TOPUP.generate("sandbox")), { environment: null, legacy: false });
    assert.deepEqual(PAYMENTS.parse(PAYMENTS.generate("live")), { environment: null, legacy: false });
  });

  test("the seed's example keys parse", () => {
    assert.deepEqual(EMAIL.parse("ck_live_1234567890abcdef1234567890abcdef12345678"), { environment: "live", legacy: false });
    assert.deepEqual(EMAIL.parse("ck_test_1234567890abcdef1234567890abcdef12345678"), { environment: "test", legacy: false });
    assert.equal(EMAIL.parse("ck_live_your_api_key_here"), null);
  });

  test("with a checksum, every single-character change anywhere in the key is rejected", () => {
    for (const [codec, alphabet] of [[PAYMENTS, BASE62], [HEX_CHECKSUM, HEX]] as const) {
      const key = codec.generate("live");
      assert.notEqual(codec.parse(key), null);
      for (let i = 0; i < key.length; i++) {
        const inAlphabet = alphabet.includes(key[i]!);
        const changed = substitute(key, i, inAlphabet ? alphabet : "abcdefghijklmnopqrstuvwxyz_-");
        assert.equal(codec.parse(changed), null, `position ${i}: ${changed}`);
      }
    }
  });

  test("with a checksum, a typo in the checksum itself is rejected", () => {
    const key = PAYMENTS.generate("live");
    const cs = key.slice(-6);
    for (let i = 0; i < 6; i++) assert.equal(PAYMENTS.parse(key.slice(0, -6) + substitute(cs, i, BASE62)), null);
  });

  test("with a checksum, swapping two adjacent different characters is rejected", () => {
    const key = HEX_CHECKSUM.generate("live");
    let checked = 0;
    for (let i = 8; i < key.length - 1; i++) {
      if (key[i] === key[i + 1]) continue;
      const swapped = key.slice(0, i) + key[i + 1] + key[i] + key.slice(i + 2);
      assert.equal(HEX_CHECKSUM.parse(swapped), null, `swap at ${i}`);
      checked++;
    }
    assert.ok(checked > 10);
  });

  test("with a checksum, the environment cannot be changed: ce_live_ → ce_test_ is rejected", () => {
    const codec = createKeyCodec(format({ prefix: "ce", checksum: true }));
    const key = codec.generate("live");
    assert.equal(codec.parse(key.replace("_live_", "_test_")), null);
  });

  test("without a checksum, a character outside the alphabet anywhere in the body is rejected", () => {
    const key = AIRTIME.generate("live");
    for (let i = 8; i < key.length; i++) {
      for (const bad of ["_", "-", "+", "/", "=", " ", "é"]) {
        assert.equal(AIRTIME.parse(key.slice(0, i) + bad + key.slice(i + 1)), null, `${JSON.stringify(bad)} at ${i}`);
      }
    }
  });

  test("a truncated or extended key is rejected", () => {
    for (const codec of [AIRTIME, EMAIL, PAYMENTS, HEX_CHECKSUM, TOPUP]) {
      const key = codec.generate(codec.format.environments[0]!);
      for (let cut = 1; cut <= 4; cut++) assert.equal(codec.parse(key.slice(0, -cut)), null);
      assert.equal(codec.parse(key + "a"), null);
      assert.equal(codec.parse(key + "0"), null);
      assert.equal(codec.parse(codec.head(codec.format.environments[0]!)), null);
    }
  });

  test("a wrong prefix, a wrong separator or an undeclared environment is rejected", () => {
    const body = AIRTIME.generate("live").slice(8);
    assert.equal(AIRTIME.parse(`cx_live_${body}`), null);
    assert.equal(AIRTIME.parse(`CE_live_${body}`), null);
    assert.equal(AIRTIME.parse(`ce-live-${body}`), null);
    assert.equal(AIRTIME.parse(`ce_prod_${body}`), null);
    assert.equal(AIRTIME.parse(`ce_${body}`), null);
    assert.equal(AIRTIME.parse(`live_${body}`), null);
    assert.equal(AIRTIME.parse(body), null);
    assert.equal(AIRTIME.parse(` ce_live_${body}`), null);
    assert.equal(AIRTIME.parse(`ce_live_${body} `), null);
  });

  test("a key of the wrong alphabet is rejected", () => {
    const hexBody = EMAIL.generate("live").slice(8);
    assert.equal(EMAIL.parse(`ck_live_${hexBody.toUpperCase().replace(/[0-9]/g, "A")}`), null, "upper-case hex");
    assert.equal(EMAIL.parse(`ck_live_${"g".repeat(40)}`), null);
    assert.equal(EMAIL.parse(`ck_live_${randomString(BASE62, 40).replace(/[0-9a-f]/g, "Z")}`), null, "base62 in a hex format");
    const uuid = TOPUP.generate("sandbox");
    assert.equal(TOPUP.parse(uuid.toUpperCase().replace(/[0-9]/g, "A")), null, "upper-case uuid");
    assert.equal(TOPUP.parse(uuid.replace(/-/g, "")), null, "uuid without dashes");
    assert.equal(TOPUP.parse(`{${uuid}}`), null, "uuid in braces");
    assert.equal(TOPUP.parse(uuid.replace(/[0-9a-f]$/, "g")), null);
  });

  test("the empty string and anything longer than 512 characters are rejected without matching", () => {
    const anything = createKeyCodec(format({ prefix: "ce", importPattern: "^.+$" }));
    assert.equal(anything.parse(""), null);
    assert.deepEqual(anything.parse("x".repeat(MAX_KEY_LENGTH)), { environment: null, legacy: true });
    assert.equal(anything.parse("x".repeat(MAX_KEY_LENGTH + 1)), null);
    assert.equal(AIRTIME.parse(AIRTIME.generate("live") + "a".repeat(600)), null);
    assert.equal(MAX_KEY_LENGTH, 512);
  });

  test("keys matching importPattern parse as legacy with no environment; native keys do not", () => {
    // The airtime v1 tokens issued before keygate, imported unchanged.
    const codec = createKeyCodec(format({
      environments: ["live"], environmentInKey: false, alphabet: "uuid", length: 36,
      importPattern: "^[A-Z0-9]{8}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{5}$",
    }));
    assert.deepEqual(codec.parse("C8000000-000G-4474-0001-J0000"), { environment: null, legacy: true });
    assert.deepEqual(codec.parse(codec.generate("live")), { environment: null, legacy: false });
    assert.equal(codec.parse("C8000000-000G-4474-0001-J000"), null);
    assert.equal(codec.parse("c8000000-000g-4474-0001-j0000"), null);
  });

  test("a native key is never reported as legacy even when importPattern would also match it", () => {
    const codec = createKeyCodec(format({ prefix: "ce", importPattern: "ce_.+" }));
    assert.deepEqual(codec.parse(codec.generate("live")), { environment: "live", legacy: false });
    assert.deepEqual(codec.parse("ce_anything"), { environment: null, legacy: true });
  });

  test("importPattern must match the whole key, anchored or not", () => {
    const codec = createKeyCodec(format({ prefix: "ce", importPattern: "[A-Z]{4}" }));
    assert.deepEqual(codec.parse("ABCD"), { environment: null, legacy: true });
    assert.equal(codec.parse("xxABCDxx"), null);
    assert.equal(codec.parse("ABCD-and-more"), null);
  });

  test("overlapping heads without a separator resolve to the right environment", () => {
    const codec = createKeyCodec(format({ prefix: "ck", separator: "", environments: ["test", "testing"] }));
    for (let i = 0; i < 50; i++) {
      assert.deepEqual(codec.parse(codec.generate("testing")), { environment: "testing", legacy: false });
      assert.deepEqual(codec.parse(codec.generate("test")), { environment: "test", legacy: false });
    }
    // A "test" key whose body happens to start with "ing" is still a test key.
    assert.deepEqual(codec.parse(`cktesting${randomString(BASE62, 29)}`), { environment: "test", legacy: false });
  });
});

describe("key start", () => {
  test("start is the head plus the first 4 body characters", () => {
    const key = AIRTIME.generate("test");
    assert.equal(AIRTIME.start(key), key.slice(0, 12));
    assert.match(AIRTIME.start(key), /^ce_test_[0-9A-Za-z]{4}$/);
    const hex = EMAIL.generate("live");
    assert.equal(EMAIL.start(hex), hex.slice(0, 12));
    const paid = PAYMENTS.generate("live");
    assert.equal(PAYMENTS.start(paid), paid.slice(0, 7));
  });

  test("without a head, start is the first 4 characters", () => {
    const uuid = TOPUP.generate("production");
    assert.equal(TOPUP.start(uuid), uuid.slice(0, 4));
    assert.equal(createKeyCodec(format({ environmentInKey: false, importPattern: "^.+$" })).start("C8000000-000G"), "C800");
  });
});

/**
 * Pearson's chi-square statistic of `counts` against a uniform distribution.
 */
function chiSquare(counts: Map<string, number>, symbols: string, total: number): number {
  const expected = total / symbols.length;
  let sum = 0;
  for (const s of symbols) sum += ((counts.get(s) ?? 0) - expected) ** 2 / expected;
  return sum;
}

/**
 * The chi-square value that a uniform source exceeds with probability 1e-6 (Wilson–Hilferty;
 * z = 4.753 is the standard normal's 1 - 1e-6 quantile). Generous on purpose: a correct
 * generator fails this once in a million runs, a biased one fails it every time.
 */
function criticalValue(degrees: number): number {
  const z = 4.753;
  const a = 2 / (9 * degrees);
  return degrees * (1 - a + z * Math.sqrt(a)) ** 3;
}

const countChars = (text: string): Map<string, number> => {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  return counts;
};

describe("randomness of key bodies", () => {
  const N = 200_000;

  test("the critical values are the textbook ones", () => {
    // Tables: chi2(0.999999; 61) ≈ 129, chi2(0.999999; 15) ≈ 57.
    assert.ok(Math.abs(criticalValue(61) - 129) < 2, String(criticalValue(61)));
    assert.ok(Math.abs(criticalValue(15) - 57.4) < 1.5, String(criticalValue(15)));
  });

  test("base62 characters are uniform (chi-square over 62 symbols, p = 1e-6)", () => {
    const text = randomString(BASE62, N);
    assert.equal(text.length, N);
    const counts = countChars(text);
    assert.deepEqual([...counts.keys()].sort(), [...BASE62].sort(), "only base62 characters, and all of them");
    const stat = chiSquare(counts, BASE62, N);
    assert.ok(stat < criticalValue(61), `chi-square ${stat.toFixed(1)} ≥ ${criticalValue(61).toFixed(1)}`);
  });

  test("hex characters are uniform (chi-square over 16 symbols, p = 1e-6)", () => {
    const text = randomString(HEX, N);
    assert.equal(text.length, N);
    const counts = countChars(text);
    assert.deepEqual([...counts.keys()].sort(), [...HEX].sort());
    const stat = chiSquare(counts, HEX, N);
    assert.ok(stat < criticalValue(15), `chi-square ${stat.toFixed(1)} ≥ ${criticalValue(15).toFixed(1)}`);
  });

  test("the same test catches the modulo bias of a naive byte % 62 generator", () => {
    // Proof that the test above can fail: 256 = 4 × 62 + 8, so `byte % 62` favours 8 characters by a quarter.
    const bytes = randomBytes(N);
    let text = "";
    for (const b of bytes) text += BASE62[b % 62];
    const stat = chiSquare(countChars(text), BASE62, N);
    // Its expected score is about 1,320 (standard deviation ~75) against a threshold of ~129:
    // five times the threshold is far from both, so this neither flakes nor passes by luck.
    assert.ok(stat > criticalValue(61) * 5, `naive generator scored only ${stat.toFixed(1)}`);
  });

  test("generated key bodies are uniform too (all 62 symbols, no bias from head or checksum)", () => {
    let bodies = "";
    while (bodies.length < N) bodies += AIRTIME.generate("live").slice(8);
    const counts = countChars(bodies);
    const stat = chiSquare(counts, BASE62, bodies.length);
    assert.ok(stat < criticalValue(61), `chi-square ${stat.toFixed(1)}`);
  });
});
