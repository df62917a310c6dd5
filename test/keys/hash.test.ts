/**
 * Key hashing: the stored hash (hex) and the cache digest (Latin-1) are one digest in two
 * spellings, for plain SHA-256 and for HMAC-SHA-256 with a server secret.
 */
import { createHash, createHmac } from "node:crypto";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeyHasher, digestOfHex, hexOfDigest, isSha256Hex } from "../../src/keys/hash.js";

// Placeholders, not keys: any string hashes.
const KEYS = ["ck_test_PLACEHOLDER_not_a_real_key", "", "ключ 🔑", "x".repeat(512)];

describe("key hashing", () => {
  test("without a secret, hash is SHA-256 in lower-case hex and digest the same bytes as 32 Latin-1 characters", () => {
    const hasher = createKeyHasher();
    assert.equal(hasher.algorithm, "sha256");
    for (const key of KEYS) {
      const expected = createHash("sha256").update(key, "utf8").digest();
      assert.equal(hasher.hash(key), expected.toString("hex"));
      const digest = hasher.digest(key);
      assert.equal(digest.length, 32);
      assert.deepEqual(Buffer.from(digest, "latin1"), expected);
      assert.equal(hexOfDigest(digest), hasher.hash(key));
      assert.equal(digestOfHex(hasher.hash(key)), digest);
    }
  });

  test("with a secret, both are HMAC-SHA-256 under it, and another secret gives another digest", () => {
    const hasher = createKeyHasher("pepper");
    assert.equal(hasher.algorithm, "hmac-sha256");
    for (const key of KEYS) {
      const expected = createHmac("sha256", "pepper").update(key, "utf8").digest();
      assert.equal(hasher.hash(key), expected.toString("hex"));
      assert.deepEqual(Buffer.from(hasher.digest(key), "latin1"), expected);
      assert.equal(digestOfHex(hasher.hash(key)), hasher.digest(key));
      assert.notEqual(createKeyHasher("other").digest(key), hasher.digest(key));
    }
  });

  test("digestOfHex reads upper-case hex as lower-case; anything else maps to no digest at all", () => {
    const hex = createKeyHasher().hash(KEYS[0]!);
    assert.equal(digestOfHex(hex.toUpperCase()), digestOfHex(hex));
    for (const other of ["", "h1", hex.slice(1), `${hex}0`, `${hex.slice(0, 63)}g`]) {
      const d = digestOfHex(other);
      assert.ok([...d].some((c) => c.charCodeAt(0) > 255), `${JSON.stringify(other)} must not map to a possible digest`);
    }
    assert.equal(isSha256Hex(hex.toUpperCase()), true);
    assert.equal(isSha256Hex(hex.slice(1)), false);
  });
});
