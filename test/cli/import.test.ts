/**
 * `keygate keys import` (the built bin, as a process) with files of a few thousand rows: CSV,
 * JSON Lines and JSON; `--json` output that is exactly one JSON document; the progress bar
 * on stderr only when stderr is a terminal; rows checked before anything is written; and a
 * failure in a later batch saying exactly which rows were stored.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { createKeyCodec } from "../../src/keys/format.js";
import type { KeyCodec } from "../../src/keys/format.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { CLI, runCli } from "../support/cli.js";
import type { CliRun } from "../support/cli.js";

const CONFIG = `
apis:
  - id: demo
    keyFormat: { prefix: sk, environments: [live, test], length: 32, checksum: true }
    scopes: [orders.read, orders.write]
`;

let dir: string;
let codec: KeyCodec;
let seq = 0;

const run = (data: string, args: string[]): Promise<CliRun> => runCli(dir, args, { data });
/** A fresh data folder with one account (made in-process: a CLI run costs half a second). */
const fresh = async (): Promise<{ data: string; accountId: string }> => {
  const data = `data-${++seq}`;
  const kg = await open(data);
  try {
    return { data, accountId: (await kg.accounts.create({ name: "Acme", email: "dev@acme.test" })).id };
  } finally {
    await kg.close();
  }
};
const file = (name: string, text: string): string => {
  writeFileSync(join(dir, name), text);
  return name;
};
/** Opens a data folder with the library, for what the CLI stored. */
const open = async (data: string): Promise<Keygate> => {
  const config = loadConfigFile(join(dir, "keygate.yaml"));
  return createKeygate({ config: { ...config, cache: { ...config.cache, changePollMs: 0 } }, store: createSqliteStore({ filename: join(dir, data, "keygate.db") }) });
};
const countKeys = async (kg: Keygate): Promise<number> => {
  let n = 0;
  for (let cursor: string | undefined; ;) {
    const page = await kg.keys.list({ limit: 100, cursor });
    n += page.data.length;
    if (!page.nextCursor) return n;
    cursor = page.nextCursor;
  }
};
/** An error is one line on stderr, `keygate: …`, with no stack trace, and nothing on stdout. */
const assertOneLineError = (res: CliRun, pattern: RegExp): void => {
  assert.equal(res.code, 1, `exit status 1 (stderr: ${res.stderr})`);
  assert.equal(res.stdout, "");
  assert.match(res.stderr, /^keygate: [^\n]+\n$/, "exactly one line");
  assert.doesNotMatch(res.stderr, /\n\s+at /, "no stack trace");
  assert.match(res.stderr, pattern);
};
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

before(() => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-cli-import-"));
  writeFileSync(join(dir, "keygate.yaml"), CONFIG);
  codec = createKeyCodec(loadConfigFile(join(dir, "keygate.yaml")).apis[0]!.keyFormat);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("keygate keys import", () => {
  test("a CSV of 3,000 keys and hashes: --json prints exactly {imported}, stderr stays empty, every key verifies", async () => {
    const { data, accountId } = await fresh();
    const secrets: string[] = [];
    const lines = ["accountId,key,hash,environment,name,scopes,rateLimit,metadata"];
    for (let i = 0; i < 3000; i++) {
      const environment = i % 3 === 0 ? "test" : "live";
      const secret = codec.generate(environment);
      secrets.push(secret);
      // Every fourth row gives only the SHA-256 of its secret, and so must say its environment.
      const [key, hash, env] = i % 4 === 0 ? ["", sha256(secret), environment] : [secret, "", ""];
      lines.push(`${accountId},${key},${hash},${env},row ${i},orders.read;orders.write,${10 + i}/60,"{""row"":${i}}"`);
    }
    const csv = file("keys.csv", `${lines.join("\n")}\n`);
    const res = await run(data, ["keys", "import", "--api", "demo", csv, "--json"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stderr, "", "no progress bar when stderr is not a terminal");
    assert.deepEqual(JSON.parse(res.stdout), { imported: 3000 });
    assert.equal(res.stdout, `${JSON.stringify({ imported: 3000 }, null, 2)}\n`, "stdout holds the JSON document and nothing else");

    const kg = await open(data);
    try {
      assert.equal(await countKeys(kg), 3000);
      for (const i of [0, 1, 2, 1499, 2998, 2999]) {
        const verdict = await kg.verifyKey({ api: "demo", key: secrets[i]! });
        assert.equal(verdict.code, "VALID", `row ${i + 1}`);
        assert.equal(verdict.name, `row ${i}`);
        assert.deepEqual(verdict.scopes, ["orders.read", "orders.write"]);
        assert.deepEqual(verdict.metadata, { row: i });
        assert.equal(verdict.ratelimit?.limit, 10 + i);
        assert.equal(verdict.environment, i % 3 === 0 ? "test" : "live");
      }
    } finally {
      await kg.close();
    }
  });

  test("JSON Lines with accountEmail and --create-accounts, and a JSON array: one account per email", async () => {
    const { data } = await fresh();
    const secrets: string[] = [];
    const rows = Array.from({ length: 1200 }, (_, i) => {
      const key = codec.generate("live");
      secrets.push(key);
      return JSON.stringify({ accountEmail: `owner${i % 3}@customers.test`, key });
    });
    const jsonl = file("keys.jsonl", `${rows.join("\n")}\n\n`);
    const arrayKey = codec.generate("test");
    const array = file("keys.json", JSON.stringify([{ accountEmail: "owner0@customers.test", key: arrayKey, scopes: ["orders.write"] }]));
    const res = await run(data, ["keys", "import", "--api", "demo", jsonl, "--create-accounts", "--batch", "500"]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, "imported 1200 keys into demo\n");
    assert.equal(res.stderr, "");
    const second = await run(data, ["keys", "import", "--api", "demo", array, "--json"]);
    assert.deepEqual(JSON.parse(second.stdout), { imported: 1 });

    const kg = await open(data);
    try {
      const accounts = (await kg.accounts.list({ limit: 100 })).data.map((a) => a.email).sort();
      assert.deepEqual(accounts, ["dev@acme.test", "owner0@customers.test", "owner1@customers.test", "owner2@customers.test"]);
      assert.equal(await countKeys(kg), 1201);
      const owner0 = (await kg.store.getAccountByEmail("owner0@customers.test"))!.id;
      assert.equal((await kg.verifyKey({ api: "demo", key: secrets[3]! })).accountId, owner0);
      assert.deepEqual((await kg.verifyKey({ api: "demo", key: arrayKey })).scopes, ["orders.write"]);
    } finally {
      await kg.close();
    }
  });

  const hasScript = spawnSync("script", ["--version"], { stdio: "ignore" }).status === 0;
  test("on a terminal the progress bar goes to stderr; stdout (a file) stays clean, and --json turns the bar off", { skip: !hasScript && "needs script(1) for a pseudo-terminal" }, async () => {
    const { data, accountId } = await fresh();
    const rows = Array.from({ length: 1200 }, () => JSON.stringify({ accountId, key: codec.generate("live") }));
    const jsonl = file("tty.jsonl", rows.join("\n"));
    const jsonRows = Array.from({ length: 600 }, () => JSON.stringify({ accountId, key: codec.generate("live") }));
    const jsonl2 = file("tty2.jsonl", jsonRows.join("\n"));
    const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_DATA_DIR: join(dir, data), KEYGATE_CONFIG: join(dir, "keygate.yaml") };
    const onTty = (args: string, out: string) => spawnSync("script", ["-q", "-e", "-c", `'${process.execPath}' '${CLI}' keys import --api demo ${args} > ${out}`, "/dev/null"], { cwd: dir, env, encoding: "utf8" });

    const plain = onTty(`${jsonl} --batch 300`, "tty.out");
    assert.equal(plain.status, 0, plain.stdout);
    assert.match(plain.stdout, /importing \[[^\]]+\] \d+\/1200 keys/, "the bar is drawn on the terminal");
    assert.equal(readFileSync(join(dir, "tty.out"), "utf8"), "imported 1200 keys into demo\n", "stdout has only the result");

    const json = onTty(`${jsonl2} --batch 300 --json`, "tty.json");
    assert.equal(json.status, 0, json.stdout);
    assert.doesNotMatch(json.stdout, /importing/, "--json never draws the bar");
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "tty.json"), "utf8")), { imported: 600 });
  });

  test("a bad row in a later batch: one line naming the row and the rows that were stored", async () => {
    const { data, accountId } = await fresh();
    const rows = Array.from({ length: 260 }, (_, i) => JSON.stringify({ accountId, key: i === 249 ? "sk_live_not-a-key" : codec.generate("live") }));
    const res = await run(data, ["keys", "import", "--api", "demo", file("late.jsonl", rows.join("\n")), "--batch", "100", "--json"]);
    assertOneLineError(res, /^keygate: MALFORMED_KEY: row 250, key: does not match API demo's key format\. Rows 1-200 were imported; fix the row and re-run with the rows after 200\.\n$/);
    assert.ok(!res.stderr.includes("sk_live_not-a-key"), "the secret is never echoed");
    const kg = await open(data);
    try {
      assert.equal(await countKeys(kg), 200, "each batch (--batch 100) is one transaction: the third was rolled back whole");
    } finally {
      await kg.close();
    }
  });

  test("rows are checked before anything is written: misspelt column, wrong type, duplicate, both key and hash", async () => {
    const { data, accountId } = await fresh();
    const good = () => `${accountId},${codec.generate("live")}`;
    const dup = codec.generate("live");
    const cases: Array<[string, string, RegExp]> = [
      // A misspelt ipAllowlist column would otherwise import the key with no IP restriction at all.
      ["typo.csv", `accountId,key,ipAllowList\n${good()},192.0.2.0/24\n`,
        /^keygate: INVALID_IMPORT: row 1: unknown field "ipAllowList"; known: accountId, accountEmail, key, hash, applicationId, environment, name, scopes, ipAllowlist, expiresAt, rateLimit, metadata\.\n$/],
      ["types.jsonl", `${JSON.stringify({ accountId, key: codec.generate("live") })}\n${JSON.stringify({ accountId, key: codec.generate("live"), scopes: "orders.read" })}\n`,
        /^keygate: INVALID_IMPORT: row 2: scopes: must be array\.\n$/],
      ["limit.jsonl", JSON.stringify({ accountId, key: codec.generate("live"), rateLimit: { limit: 0, windowSeconds: 60 } }),
        /^keygate: INVALID_IMPORT: row 1: rateLimit\.limit: must be >= 1\.\n$/],
      ["expiry.csv", `accountId,key,expiresAt\n${good()},next tuesday\n`, /^keygate: INVALID_IMPORT: row 1: expiresAt: must match format "date-time"\.\n$/],
      ["dup.csv", `accountId,key\n${good()}\n${accountId},${dup}\n${good()}\n${accountId},${dup}\n`, /^keygate: DUPLICATE_KEY: row 4: the same key as row 2; nothing was imported\.\n$/],
      ["both.csv", `accountId,key,hash\n${good()},${sha256("x")}\n`, /^keygate: INVALID_IMPORT: row 1: give exactly one of "key" \(the secret\) or "hash" \(its SHA-256 in hex\)\.\n$/],
      ["noaccount.csv", `name,key\nx,${codec.generate("live")}\n`, /^keygate: INVALID_IMPORT: row 1: give accountId or accountEmail\.\n$/],
    ];
    const results = await Promise.all(cases.map(([name, text]) => run(data, ["keys", "import", "--api", "demo", file(name, text), "--json"])));
    for (const [i, res] of results.entries()) {
      assertOneLineError(res, cases[i]![2]);
      assert.ok(!res.stderr.includes(dup), "a duplicate secret is named by its rows only");
    }
    const kg = await open(data);
    try {
      assert.equal(await countKeys(kg), 0, "no file wrote a key");
    } finally {
      await kg.close();
    }
  });

  test("an unknown accountEmail without --create-accounts, an unknown api, an empty file: one-line errors, nothing written", async () => {
    const { data } = await fresh();
    const [email, api, empty] = await Promise.all([
      run(data, ["keys", "import", "--api", "demo", file("email.jsonl", JSON.stringify({ accountEmail: "ghost@nowhere.test", key: codec.generate("live") }))]),
      run(data, ["keys", "import", "--api", "payments", "--create-accounts", file("api.jsonl", JSON.stringify({ accountEmail: "new@customers.test", key: codec.generate("live") }))]),
      run(data, ["keys", "import", "--api", "demo", file("empty.csv", "accountId,key\n")]),
    ]);
    assertOneLineError(email, /^keygate: UNKNOWN_ACCOUNT: row 1: no account with email ghost@nowhere\.test \(pass --create-accounts to create it\)\. Nothing was imported\.\n$/);
    assertOneLineError(api, /^keygate: UNKNOWN_API: No API with id "payments" is configured; known: demo\. Nothing was imported\.\n$/);
    assertOneLineError(empty, /^keygate: EMPTY_IMPORT: empty\.csv holds no keys\.\n$/);
    const kg = await open(data);
    try {
      assert.equal(await countKeys(kg), 0);
      assert.equal(await kg.store.getAccountByEmail("ghost@nowhere.test"), null, "no account was created");
      assert.equal(await kg.store.getAccountByEmail("new@customers.test"), null, "an unknown api stops --create-accounts before it creates anything");
    } finally {
      await kg.close();
    }
  });
});
