/**
 * "Secrets are shown once and stored only as hashes": after creating, importing, verifying
 * and rotating keys on a real SQLite file, no byte of the database, its WAL or its shared
 * memory file holds a secret, while every key's hash is there (so the search itself works).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";

const LEGACY_PATTERN = "^[A-Z0-9]{8}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{5}$";

const CONFIGS: Array<[name: string, security: Record<string, string>]> = [
  ["plain SHA-256 hashes", {}],
  ["HMAC-SHA-256 hashes (hashSecret)", { hashSecret: "pepper-for-no-secrets-test" }],
];

/** Every file in `dir` (the database, -wal, -shm, journals), name → bytes. */
const snapshot = (dir: string): Map<string, Buffer> =>
  new Map(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));

const holders = (files: Map<string, Buffer>, needle: string): string[] =>
  [...files].filter(([, bytes]) => bytes.includes(Buffer.from(needle, "utf8"))).map(([name]) => name);

for (const [name, security] of CONFIGS) {
  describe(`no secrets at rest in SQLite: ${name}`, () => {
    let dir: string;
    const secrets: string[] = [];
    const hashes: string[] = [];
    let whileOpen: Map<string, Buffer>;
    let afterClose: Map<string, Buffer>;

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), "keygate-secrets-"));
      const keygate: Keygate = await createKeygate({
        config: {
          security,
          cache: { changePollMs: 0 },
          apis: [
            { id: "pay", keyFormat: { prefix: "pk", checksum: true }, scopes: ["read", "write"] },
            { id: "mail", keyFormat: { prefix: "ck", alphabet: "hex", length: 40 } },
            { id: "airtime", keyFormat: { environments: ["live"], environmentInKey: false, alphabet: "uuid", importPattern: LEGACY_PATTERN } },
          ],
        },
        store: createSqliteStore({ filename: join(dir, "keygate.db") }),
      });
      const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
      const accountId = account.id;

      for (const api of ["pay", "mail", "airtime"]) {
        for (let i = 0; i < 3; i++) secrets.push((await keygate.keys.create({ api, accountId, name: `generated ${i}` })).key);
      }
      const importedPlain = [
        keygate.apis.get("pay")!.codec.generate("live"),
        keygate.apis.get("mail")!.codec.generate("test"),
        "C8000000-000G-4474-0001-J0000",
      ];
      await keygate.keys.import("pay", [{ accountId, key: importedPlain[0]! }]);
      await keygate.keys.import("mail", [{ accountId, key: importedPlain[1]! }]);
      await keygate.keys.import("airtime", [{ accountId, key: importedPlain[2]! }]);
      secrets.push(...importedPlain);

      const rotated = await keygate.keys.create({ api: "pay", accountId });
      const { key: successor } = await keygate.keys.rotate(rotated.id, { gracePeriodSeconds: 60 });
      secrets.push(rotated.key, successor.key);

      // Verified keys get usage written; a key that is only ever presented is never stored.
      for (const key of secrets.slice(0, 4)) assert.equal((await keygate.verifyKey({ api: key.startsWith("ck_") ? "mail" : "pay", key })).valid, true);
      const presented = keygate.apis.get("pay")!.codec.generate("live");
      assert.equal((await keygate.verifyKey({ api: "pay", key: presented, ip: "203.0.113.1" })).code, "NOT_FOUND");
      secrets.push(presented);
      await keygate.flush();

      hashes.push(...(await keygate.store.listKeys({ limit: 1000 })).map((k) => k.hash));
      assert.equal(hashes.length, secrets.length - 1, "every stored key was found");
      whileOpen = snapshot(dir);
      await keygate.close();
      afterClose = snapshot(dir);
    });

    after(() => { rmSync(dir, { recursive: true, force: true }); });

    test("the database files were read, WAL included while open", () => {
      assert.ok(whileOpen.has("keygate.db"));
      assert.ok(whileOpen.has("keygate.db-wal"), `files while open: ${[...whileOpen.keys()].join(", ")}`);
      assert.ok(afterClose.has("keygate.db"));
      assert.ok([...afterClose.values()].some((b) => b.length > 0));
    });

    test("no file holds any secret, whole or without its head", () => {
      for (const [when, files] of [["while open", whileOpen], ["after close", afterClose]] as const) {
        for (const secret of secrets) {
          assert.deepEqual(holders(files, secret), [], `${when}: a secret is stored`);
          // The random body alone, in case a head were stored apart from it.
          const body = secret.replace(/^(pk|ck)_(live|test)_/, "");
          assert.ok(body.length >= 29);
          assert.deepEqual(holders(files, body), [], `${when}: a secret's body is stored`);
        }
      }
    });

    test("every key's hash is in the files (so the search above can find what is there)", () => {
      for (const files of [whileOpen, afterClose]) {
        for (const hash of hashes) assert.notDeepEqual(holders(files, hash), [], `hash ${hash} not found`);
      }
    });

    test("each hash is the key's SHA-256 or HMAC, never the key", () => {
      assert.ok(hashes.every((h) => /^[0-9a-f]{64}$/.test(h)));
    });
  });
}
