/**
 * Portal passwords: scrypt with a per-user salt and its parameters in the hash, verified in
 * constant time; tampered or foreign hashes are mismatches, never crashes; the rules for new
 * passwords.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { hashPassword, needsRehash, passwordProblem, SCRYPT_PARAMS, verifyPassword } from "../../src/portal/password.js";

describe("portal passwords", () => {
  test("a hash is scrypt with its parameters, a 16-byte salt and a 32-byte key, and verifies", async () => {
    const stored = await hashPassword("correct horse battery staple");
    const [scheme, n, r, p, salt, key] = stored.split("$");
    assert.equal(scheme, "scrypt");
    assert.deepEqual([Number(n), Number(r), Number(p)], [SCRYPT_PARAMS.N, SCRYPT_PARAMS.r, SCRYPT_PARAMS.p]);
    assert.equal(Buffer.from(salt!, "base64url").length, 16);
    assert.equal(Buffer.from(key!, "base64url").length, 32);
    assert.ok(!stored.includes("correct horse"));
    assert.equal(await verifyPassword("correct horse battery staple", stored), true);
    assert.equal(await verifyPassword("correct horse battery stapl", stored), false);
    assert.equal(await verifyPassword("", stored), false);
    assert.equal(needsRehash(stored), false);
  });

  test("the same password gets a different salt and hash each time", async () => {
    const [a, b] = await Promise.all([hashPassword("same password 123"), hashPassword("same password 123")]);
    assert.notEqual(a, b);
    assert.notEqual(a.split("$")[4], b.split("$")[4]);
  });

  test("unicode passwords are compared in NFC, so the same characters typed differently match", async () => {
    const stored = await hashPassword("caf\u00e9 au lait 42");
    assert.equal(await verifyPassword("cafe\u0301 au lait 42", stored), true);
  });

  test("malformed, foreign and tampered hashes are mismatches, and ask for a re-hash", async () => {
    const stored = await hashPassword("correct horse battery staple");
    const parts = stored.split("$");
    const bad = [
      "", "plain-text-password", "$2b$12$abcdefghijklmnopqrstuv", "scrypt$32768$8$3$salt",
      ["scrypt", String(2 ** 30), ...parts.slice(2)].join("$"), // would allocate gigabytes
      ["scrypt", "1000", ...parts.slice(2)].join("$"), // N not a power of two
      ["scrypt", ...parts.slice(1, 4), "", parts[5]].join("$"),
    ];
    for (const h of bad) {
      assert.equal(await verifyPassword("correct horse battery staple", h), false, h);
      assert.equal(needsRehash(h), true, h);
    }
    const weaker = ["scrypt", String(2 ** 14), "8", "1", ...parts.slice(4)].join("$");
    assert.equal(await verifyPassword("correct horse battery staple", weaker), false, "other parameters give another key");
    assert.equal(needsRehash(weaker), true);
  });

  test("new passwords need 10 characters, not the email, not one repeated character", () => {
    assert.match(passwordProblem("short", "a@b.test")!, /at least 10/);
    assert.match(passwordProblem("a".repeat(201), "a@b.test")!, /at most 200/);
    assert.match(passwordProblem("Dev@Acme.test", "dev@acme.test")!, /email/);
    assert.match(passwordProblem("xxxxxxxxxxxx", "a@b.test")!, /repeat/);
    assert.equal(passwordProblem("correct horse battery staple", "a@b.test"), null);
  });
});
