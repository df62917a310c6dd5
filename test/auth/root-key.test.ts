/**
 * The root-key checks: the plain hash comparison and the server's memoising one, which must
 * answer exactly as the plain one does for every key, before and after the root key was seen.
 */
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRootKeyCheck, matchesRootKey } from "../../src/auth/root-key.js";

const ROOT = "kg_root_0123456789abcdefghijABCDEFGHIJ0123456789";
const hash = createHash("sha256").update(ROOT).digest();

describe("root key checks", () => {
  test("matchesRootKey accepts the key whose SHA-256 is stored, and nothing else", () => {
    assert.equal(matchesRootKey(ROOT, hash), true);
    assert.equal(matchesRootKey(ROOT, hash.toString("hex")), true);
    assert.equal(matchesRootKey(`${ROOT.slice(0, -1)}8`, hash), false);
    assert.equal(matchesRootKey("", hash), false);
  });

  test("createRootKeyCheck answers as matchesRootKey, before and after the root key was presented", () => {
    const isRoot = createRootKeyCheck(hash);
    const others = [
      `${ROOT.slice(0, -1)}8`, // same length, last character changed
      `X${ROOT.slice(1)}`, // same length, first character changed
      ROOT.slice(0, -1), // shorter
      `${ROOT}0`, // longer
      `${ROOT.slice(0, -1)}é`, // same string length, one byte longer in UTF-8
      "",
    ];
    for (const other of others) assert.equal(isRoot(other), false, `before: ${other}`);
    assert.equal(isRoot(ROOT), true);
    for (let i = 0; i < 3; i++) {
      assert.equal(isRoot(ROOT), true, "the proven key, again");
      for (const other of others) assert.equal(isRoot(other), false, `after: ${other}`);
    }
  });

  test("a root key with non-ASCII characters is checked through its hash every time, and still matches", () => {
    const unicode = "kg_root_ключ-0123456789abcdefghij0123456789";
    const isRoot = createRootKeyCheck(createHash("sha256").update(unicode).digest());
    for (let i = 0; i < 3; i++) assert.equal(isRoot(unicode), true);
    assert.equal(isRoot(unicode.replace("к", "k")), false);
  });
});
