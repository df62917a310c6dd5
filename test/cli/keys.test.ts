/**
 * The `keygate` CLI (the built bin, dist/cli/index.js, run as a process) on a SQLite data
 * folder: accounts create|list and keys create|list|revoke|rotate, with --json parsed and
 * asserted, the secret printed by create and rotate only, and the result checked by opening
 * the same database with the library.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.js";
import { createKeygate } from "../../src/keygate.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { CLI, runCli } from "../support/cli.js";
import type { CliRun } from "../support/cli.js";

const CONFIG = `
apis:
  - id: demo
    keyFormat: { prefix: sk, environments: [live, test], length: 32, checksum: true }
    scopes: [orders.read, orders.write]
    defaultScopes: [orders.read]
  - id: mail
    keyFormat: { prefix: mk, alphabet: hex, length: 40 }
`;

let dir: string;
const run = (args: string[]): Promise<CliRun> => runCli(dir, args);
/** Runs a --json command that must succeed and print nothing but one JSON document. */
const json = async (args: string[]): Promise<any> => {
  const res = await run([...args, "--json"]);
  assert.equal(res.code, 0, `keygate ${args.join(" ")} failed: ${res.stderr}`);
  assert.equal(res.stderr, "", "nothing on stderr");
  return JSON.parse(res.stdout);
};

before(() => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-cli-keys-"));
  writeFileSync(join(dir, "keygate.yaml"), CONFIG);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("keygate accounts and keys", () => {
  let accountId: string;
  const created: Array<{ id: string; key: string }> = [];

  test("accounts create --json prints the account; the text form prints one line", async () => {
    const [a, text] = await Promise.all([
      json(["accounts", "create", "--name", "Acme", "--email", "dev@acme.test"]),
      run(["accounts", "create", "--name", "Globex", "--email", "dev@globex.test"]),
    ]);
    assert.deepEqual(Object.keys(a).sort(), ["createdAt", "email", "id", "ipAllowlists", "metadata", "name", "updatedAt"]);
    assert.match(a.id, /^acc_[0-9A-Za-z]{22}$/);
    assert.equal(a.name, "Acme");
    assert.equal(a.email, "dev@acme.test");
    accountId = a.id;
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^acc_[0-9A-Za-z]{22} {2}Globex <dev@globex\.test>\n$/);
    const list = await json(["accounts", "list"]);
    assert.deepEqual(list.data.map((x: { name: string }) => x.name).sort(), ["Acme", "Globex"]);
    assert.equal(list.nextCursor, null);
  });

  test("keys create --json prints the key with its secret; without --json the secret comes first, then a warning", async () => {
    const [k, full, res] = await Promise.all([
      json(["keys", "create", "--api", "demo", "--account", accountId]),
      json([
        "keys", "create", "--api", "demo", "--account", accountId, "--name", "ci", "--env", "test", "--scopes", "orders.read,orders.write",
        "--ip", "192.0.2.0/24", "--ip", "203.0.113.7", "--expires", "2099-01-01T00:00:00Z", "--rate-limit", "100/1m",
      ]),
      run(["keys", "create", "--api", "mail", "--account", accountId]),
    ]);
    assert.match(k.key, /^sk_live_[0-9A-Za-z]{32}$/);
    assert.equal(k.start, k.key.slice(0, 12));
    assert.deepEqual([k.api, k.accountId, k.environment, k.status, k.scopes, k.source], ["demo", accountId, "live", "active", ["orders.read"], "generated"]);
    created.push(k);

    assert.match(full.key, /^sk_test_/);
    assert.deepEqual(
      [full.name, full.environment, full.scopes, full.ipAllowlist, full.expiresAt, full.rateLimit],
      ["ci", "test", ["orders.read", "orders.write"], ["192.0.2.0/24", "203.0.113.7/32"], "2099-01-01T00:00:00.000Z", { limit: 100, windowSeconds: 60 }],
    );
    created.push(full);

    assert.equal(res.code, 0, res.stderr);
    const [secret, blank, note] = res.stdout.split("\n");
    assert.match(secret!, /^mk_live_[0-9a-f]{40}$/);
    assert.equal(blank, "");
    assert.match(note!, /^key_\w+ \(live\) created\. The key above is shown only this once: store it now\.$/);
    created.push({ id: note!.split(" ")[0]!, key: secret! });
  });

  test("keys list --json: every key, never a secret; filters and pages", async () => {
    const [res, demo, first, text] = await Promise.all([
      run(["keys", "list", "--json"]),
      json(["keys", "list", "--account", accountId, "--api", "demo"]),
      json(["keys", "list", "--limit", "2"]),
      run(["keys", "list", "--limit", "2"]),
    ]);
    assert.equal(res.code, 0, res.stderr);
    for (const k of created) assert.ok(!res.stdout.includes(k.key), "no secret in the list");
    const page = JSON.parse(res.stdout);
    assert.deepEqual(page.data.map((k: { id: string }) => k.id).sort(), created.map((k) => k.id).sort());
    for (const k of page.data) assert.ok(!("key" in k));
    assert.equal(demo.data.length, 2);

    assert.equal(first.data.length, 2);
    assert.equal(first.nextCursor, first.data[1].id);
    const rest = await json(["keys", "list", "--limit", "2", "--cursor", first.nextCursor]);
    assert.equal(rest.nextCursor, null);
    assert.deepEqual([...first.data, ...rest.data].map((k: { id: string }) => k.id), page.data.map((k: { id: string }) => k.id));

    const lines = text.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    for (const line of lines.slice(0, 2)) assert.match(line, /^key_\w+ {2}(sk|mk)_(live|test)_\w{4} {2}(live|test) {2}active {2}\S+ {2}\S+ {2}never$/, "id, start, environment, status, name, scopes, last use");
    assert.equal(lines[2], `next: --cursor ${first.nextCursor}`);
  });

  test("keys rotate --grace --json: the successor's secret and the previous key in its grace period; keys revoke", async () => {
    const old = created[0]!;
    const revoking = created[1]!;
    const [r, revoked] = await Promise.all([json(["keys", "rotate", old.id, "--grace", "3600"]), json(["keys", "revoke", revoking.id])]);
    assert.deepEqual(Object.keys(r).sort(), ["key", "previous"]);
    assert.match(r.key.key, /^sk_live_/);
    assert.ok(!("key" in r.previous));
    assert.equal(r.previous.id, old.id);
    assert.equal(r.previous.status, "rotating");
    assert.equal(r.previous.replacedBy, r.key.id);
    assert.equal(Date.parse(r.previous.graceEndsAt) - Date.parse(r.previous.rotatedAt), 3_600_000);
    created.push(r.key);

    assert.equal(revoked.status, "revoked");
    assert.ok(!("key" in revoked));
    const again = await run(["keys", "revoke", revoking.id]);
    assert.equal(again.code, 0, "revoking twice is not an error");
    assert.equal(again.stdout, `${revoking.id} revoked at ${revoked.revokedAt}\n`, "the text form is one line, with the first revocation time");
  });

  test("the library, opening the same database, sees what the CLI did", async () => {
    const config = loadConfigFile(join(dir, "keygate.yaml"));
    const keygate = await createKeygate({
      config: { ...config, cache: { ...config.cache, changePollMs: 0 } },
      store: createSqliteStore({ filename: join(dir, "data", "keygate.db") }),
    });
    try {
      const code = async (api: string, key: string) => (await keygate.verifyKey({ api, key, ip: "192.0.2.1" })).code;
      assert.equal(await code("demo", created[0]!.key), "VALID", "rotated, still in its grace period");
      assert.equal(await code("demo", created[1]!.key), "REVOKED");
      assert.equal(await code("mail", created[2]!.key), "VALID");
      assert.equal(await code("demo", created[3]!.key), "VALID", "the successor");
    } finally {
      await keygate.close();
    }
  });
});
