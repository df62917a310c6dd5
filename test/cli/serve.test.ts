/**
 * `keygate serve` without KEYGATE_ROOT_KEY: the first start generates a root key, prints it
 * once in a banner on stderr and stores only its SHA-256; later starts print nothing and
 * accept the same key; KEYGATE_ROOT_KEY replaces it, and a short one is refused in one line.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256Hex } from "../../src/keys/hash.js";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { CLI, startServe } from "../support/serve.js";

const CONFIG = "apis:\n  - id: demo\n    keyFormat: { prefix: sk, checksum: true }\n";
const ROOT_KEY = /kg_root_[0-9A-Za-z]{40}/g;

let dir: string;
let config: string;
let data: string;
let rootKey: string;

const apis = (url: string, key: string) => fetch(`${url}/v1/apis`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5000) });
const storedHash = async (): Promise<string | null> => {
  const store = createSqliteStore({ filename: join(data, "keygate.db") });
  try {
    return await store.getSetting("root_key_sha256");
  } finally {
    await store.close();
  }
};

before(() => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-cli-serve-"));
  config = join(dir, "keygate.yaml");
  data = join(dir, "data");
  writeFileSync(config, CONFIG);
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("keygate serve and the root key", () => {
  test("the first start prints a generated root key once, in a banner, and stores only its hash", async () => {
    const kg = await startServe({ config, dataDir: data, env: { KEYGATE_ROOT_KEY: "" } });
    let output: string;
    try {
      const found = kg.logs.join("\n").match(ROOT_KEY) ?? [];
      assert.equal(found.length, 1, "the key appears exactly once in everything the process printed");
      rootKey = found[0]!;
      const banner = kg.logs.findIndex((l) => l.includes(rootKey));
      assert.match(kg.logs[banner - 2] ?? "", /^║ {2}keygate generated a root key\. It is shown this once and stored only as a hash: +║$/);
      assert.ok(kg.logs.slice(0, banner).some((l) => l.startsWith("╔═")), "framed by a box");
      assert.ok(kg.logs.slice(banner).some((l) => l.startsWith("╚═")));
      assert.ok(kg.logs.some((l) => l.includes("KEYGATE_ROOT_KEY (32+ characters)")), "the banner says how to choose one");
      const listening = kg.logs.find((l) => l.includes('"keygate listening on'));
      assert.equal(JSON.parse(listening!).rootKey, "generated");

      assert.equal((await apis(kg.url, rootKey)).status, 200, "the printed key is the root key");
      // One character changed (to one it is not: a key ending in x would otherwise stay the same).
      assert.equal((await apis(kg.url, `${rootKey.slice(0, -1)}${rootKey.endsWith("x") ? "y" : "x"}`)).status, 401);
      output = kg.logs.join("\n");
    } finally {
      await kg.stop();
    }
    assert.ok(output.includes(rootKey));
    assert.equal(await storedHash(), sha256Hex(rootKey), "the store holds the key's SHA-256");
    for (const name of readdirSync(data)) {
      assert.ok(!readFileSync(join(data, name)).includes(rootKey), `${name} does not contain the root key`);
    }
  });

  test("a later start prints no key and accepts the stored one", async () => {
    const kg = await startServe({ config, dataDir: data, env: { KEYGATE_ROOT_KEY: "" } });
    try {
      assert.equal(kg.logs.join("\n").match(ROOT_KEY), null, "no key printed");
      assert.ok(!kg.logs.some((l) => l.includes("╔")), "no banner");
      assert.equal(JSON.parse(kg.logs.find((l) => l.includes('"keygate listening on'))!).rootKey, "store");
      assert.equal((await apis(kg.url, rootKey)).status, 200);
    } finally {
      await kg.stop();
    }
  });

  test("KEYGATE_ROOT_KEY (32+ characters) replaces the stored key, without a banner", async () => {
    const chosen = "automation-root-key-0123456789abcdefgh";
    const kg = await startServe({ config, dataDir: data, env: { KEYGATE_ROOT_KEY: chosen } });
    try {
      assert.ok(!kg.logs.some((l) => l.includes("╔") || l.includes(chosen)), "neither a banner nor the key in the output");
      assert.equal(JSON.parse(kg.logs.find((l) => l.includes('"keygate listening on'))!).rootKey, "env");
      assert.equal((await apis(kg.url, chosen)).status, 200);
      assert.equal((await apis(kg.url, rootKey)).status, 401, "the generated key no longer works");
    } finally {
      await kg.stop();
    }
    assert.equal(await storedHash(), sha256Hex(chosen));
  });

  test("a KEYGATE_ROOT_KEY shorter than 32 characters: one line, exit 1, nothing served", () => {
    const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_ROOT_KEY: "too-short", KEYGATE_LOG_LEVEL: "silent" };
    for (const k of ["KEYGATE_DATABASE_URL", "KEYGATE_REDIS_URL", "PORT"]) delete env[k];
    const res = spawnSync(process.execPath, [CLI, "serve", "--port", "0", "--config", config, "--data", data], { env, encoding: "utf8", timeout: 15_000 });
    assert.equal(res.status, 1, res.stderr);
    assert.equal(res.stderr, "keygate: INVALID_CONFIG: KEYGATE_ROOT_KEY: must be at least 32 characters (got 9)\n");
    assert.doesNotMatch(res.stdout, /listening/);
  });
});
