/**
 * JWT signing keys shared through the store: two keygate processes' worth of instances on one
 * SQLite file agree on the active key even when they start at once, verify each other's
 * tokens, follow each other's rotations, and keep private keys encrypted under hashSecret.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader } from "jose";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { KeygateError } from "../../src/lib/errors.js";

const config = (hashSecret = "") => ({
  security: { hashSecret },
  cache: { changePollMs: 0 },
  apis: [
    { id: "pay", keyFormat: { prefix: "SK" }, credentials: [{ type: "jwt" }], tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] } },
    { id: "mail", keyFormat: { prefix: "mk" }, credentials: [{ type: "jwt" }], tokens: { algorithm: "ES256", endpoints: [{ style: "oauth2", path: "/token" }] } },
  ],
});

describe("JWT signing keys in a shared store", () => {
  let dir: string;
  const open: Keygate[] = [];
  const node = async (file: string, hashSecret = ""): Promise<Keygate> => {
    const k = await createKeygate({ config: config(hashSecret), store: createSqliteStore({ filename: join(dir, file) }) });
    open.push(k);
    return k;
  };
  before(() => { dir = mkdtempSync(join(tmpdir(), "keygate-signing-")); });
  after(async () => {
    for (const k of open) await k.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("nodes starting at once agree on one active key per algorithm", async () => {
    // A fresh file: the nodes race to migrate it too.
    const nodes = await Promise.all([node("race.db"), node("race.db"), node("race.db")]);
    const views = await Promise.all(nodes.map((n) => n.tokens.signingKeys.list()));
    for (const v of views) {
      assert.deepEqual(v.map((k) => k.alg).sort(), ["ES256", "EdDSA"]);
      assert.deepEqual(v.map((k) => k.kid).sort(), views[0]!.map((k) => k.kid).sort());
    }
  });

  test("a token minted on one node verifies on the other, before and after a rotation", async () => {
    const a = await node("shared.db");
    const b = await node("shared.db");
    const account = await a.accounts.create({ name: "Shop", email: "shop@example.test" });
    const app = await a.applications.create({ accountId: account.id, api: "pay", name: "Shop" });
    const { id, key } = await a.keys.create({ api: "pay", accountId: account.id, applicationId: app.id });
    const mint = async (on: Keygate): Promise<string> => {
      const issued = await on.tokens.issue({ api: "pay", clientId: app.clientId, key });
      assert.ok(issued.ok);
      return issued.token;
    };
    const first = await mint(a);
    assert.equal((await b.tokens.verify({ api: "pay", token: first })).keyId, id);
    const rotated = await a.tokens.signingKeys.rotate("EdDSA");
    const second = await mint(a);
    assert.equal(decodeProtectedHeader(second).kid, rotated.kid);
    // b has never seen this kid: it rereads the key set once and accepts the token.
    const verdict = await b.tokens.verify({ api: "pay", token: second });
    assert.equal(verdict.valid, true, verdict.code);
    assert.equal((await b.tokens.verify({ api: "pay", token: first })).valid, true, "the retired key still verifies");
    // A token of one API is no good on another, even when both use this deployment's keys.
    assert.equal((await b.tokens.verify({ api: "mail", token: second })).code, "INVALID_TOKEN");
    const jwks = await b.tokens.jwks();
    assert.ok(jwks.keys.some((k) => k.kid === rotated.kid));
  });

  test("with hashSecret the private keys are stored encrypted, and another secret cannot use them", async () => {
    const secret = "a-server-secret-of-at-least-32-characters!";
    const k = await node("sealed.db", secret);
    const store = createSqliteStore({ filename: join(dir, "sealed.db") });
    try {
      const raw = (await store.getSetting("tokens.signing-keys"))!;
      const stored = JSON.parse(raw) as { keys: Array<Record<string, unknown>> };
      assert.equal(stored.keys.length, 2);
      for (const key of stored.keys) {
        assert.equal(key.privateJwk, undefined);
        assert.match(String(key.privateJwe), /^eyJ[^.]*\.\.[^.]+\.[^.]+\.[^.]+$/, "a compact JWE with direct encryption");
        assert.equal((key.publicJwk as Record<string, unknown>).d, undefined);
      }
    } finally {
      await store.close();
    }
    assert.equal((await k.tokens.jwks()).keys.length, 2);
    await assert.rejects(node("sealed.db", "another-server-secret-of-32-characters!!"), (e: unknown) => e instanceof KeygateError && e.code === "SIGNING_KEY_LOCKED");
  });
});
