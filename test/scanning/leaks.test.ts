/**
 * Finding a reported token's key as the verifier would (HMAC hashes, plain SHA-256 imports),
 * without a storage query for tokens of no API's format, and acting on it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { findKeyBySecret, reportLeakedKey } from "../../src/scanning/leaks.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

describe("findKeyBySecret and reportLeakedKey", () => {
  let t: TestKeygate;
  before(async () => {
    t = await createTestKeygate({
      security: { hashSecret: "leaks-test-pepper-0123456789" },
      apis: [
        { id: "demo", keyFormat: { prefix: "sk", environments: ["live", "test"], checksum: true } },
        { id: "files", keyFormat: { prefix: "fk", environments: ["live"], alphabet: "hex", length: 40, checksum: true } },
      ],
    });
  });
  after(async () => { await t?.keygate.close(); });

  test("a generated key (HMAC hash) is found", async () => {
    const created = await t.keygate.keys.create({ api: "demo", accountId: t.accountId });
    assert.equal((await findKeyBySecret(t.keygate, created.key))?.id, created.id);
  });

  test("a key imported as its plain SHA-256 is found despite the hash secret", async () => {
    const key = t.keygate.apis.get("files")!.codec.generate("live");
    const [imported] = await t.keygate.keys.import("files", [{ accountId: t.accountId, hash: createHash("sha256").update(key).digest("hex") }]);
    assert.equal((await findKeyBySecret(t.keygate, key))?.id, imported!.id);
  });

  test("a token of no API's format, or with a wrong checksum, never reaches the store", async () => {
    const key = t.keygate.apis.get("demo")!.codec.generate("live");
    const wrong = key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
    t.calls.reset();
    for (const token of ["AKIAIOSFODNN7EXAMPLE", wrong, `${key}x`, ""]) assert.equal(await findKeyBySecret(t.keygate, token), null);
    assert.equal(t.calls.count("getKeyByHash"), 0);
  });

  test("a well-formed key nobody was issued is not found and nothing is written", async () => {
    const key = t.keygate.apis.get("demo")!.codec.generate("test");
    t.calls.reset();
    assert.deepEqual(await reportLeakedKey(t.keygate, { token: key, url: null, source: null, reporter: "manual" }, "revoke"), { found: false });
    assert.equal(t.calls.count("updateKey"), 0);
  });

  test("reporting twice is harmless: the key stays revoked, the last report is recorded", async () => {
    const created = await t.keygate.keys.create({ api: "demo", accountId: t.accountId });
    const report = { token: created.key, url: "https://example.test/a", source: "content", reporter: "manual" };
    const at = (n: number) => () => T0 + n;
    assert.deepEqual(await reportLeakedKey(t.keygate, report, "revoke", at(1)), { found: true, keyId: created.id, api: "demo", action: "revoked" });
    await reportLeakedKey(t.keygate, { ...report, url: "https://example.test/b" }, "revoke", at(2));
    const key = await t.keygate.keys.get(created.id);
    assert.equal(key.status, "revoked");
    assert.deepEqual(key.metadata.leaked, { url: "https://example.test/b", source: "content", reporter: "manual", at: new Date(T0 + 2).toISOString(), action: "revoked" });
  });
});
