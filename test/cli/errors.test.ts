/**
 * Every error of the `keygate` CLI (the built bin, as a process) is one clear line on stderr —
 * `keygate: CODE: what is wrong` — with exit status 1, nothing on stdout and no stack trace:
 * bad input to a command, an unknown api or account, a missing file, a bad config file (naming
 * the file and the field), and usage mistakes caught by the argument parser.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFile } from "../../src/config/load.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
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
let accountId: string;
let revokedId: string;

const run = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> => runCli(dir, args, { env });
const open = async (): Promise<Keygate> => {
  const config = loadConfigFile(join(dir, "keygate.yaml"));
  return createKeygate({ config: { ...config, cache: { ...config.cache, changePollMs: 0 } }, store: createSqliteStore({ filename: join(dir, "data", "keygate.db") }) });
};
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const config = (name: string, text: string): string => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

/** `args` fails with exactly one line on stderr that matches `line`. */
async function fails(args: string[], line: RegExp, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const res = await run(args, env);
  const what = `keygate ${args.join(" ")}`;
  assert.equal(res.code, 1, `${what}: exit status 1 (stderr: ${res.stderr})`);
  assert.equal(res.stdout, "", `${what}: nothing on stdout`);
  assert.match(res.stderr, /^keygate: [^\n]+\n$/, `${what}: exactly one line on stderr, got ${JSON.stringify(res.stderr)}`);
  assert.doesNotMatch(res.stderr, /\bat .+:\d+:\d+|Error: /, `${what}: no stack trace or raw error name`);
  assert.match(res.stderr, line, what);
}

before(async () => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-cli-errors-"));
  writeFileSync(join(dir, "keygate.yaml"), CONFIG);
  const kg = await open();
  try {
    accountId = (await kg.accounts.create({ name: "Acme", email: "dev@acme.test" })).id;
    const k = await kg.keys.create({ api: "demo", accountId });
    await kg.keys.revoke(k.id);
    revokedId = k.id;
  } finally {
    await kg.close();
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("CLI errors are one line, exit 1, no stack trace", () => {
  test("bad input to a command, in the admin API's codes; nothing is written", async () => {
    await Promise.all([
      fails(["keys", "create", "--api", "payments", "--account", "acc_x"], /^keygate: UNKNOWN_API: No API with id "payments" is configured; known: demo\.\n$/),
      fails(["keys", "create", "--api", "demo", "--account", "acc_0000000000000000000000"], /^keygate: UNKNOWN_ACCOUNT: No account with id "acc_0000000000000000000000"; create it with POST \/v1\/accounts first\.\n$/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--ip", "10.0.0.0/33"], /^keygate: INVALID_IP_ALLOWLIST: ipAllowlist\[0\]: "10\.0\.0\.0\/33" is not an IP address or CIDR range/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--expires", "2020-01-01T00:00:00Z"], /^keygate: EXPIRES_AT_IN_PAST: expiresAt: 2020-01-01T00:00:00\.000Z is not in the future\.\n$/),
      fails(["keys", "revoke", "key_0000000000000000000000"], /^keygate: KEY_NOT_FOUND: No key with id "key_0000000000000000000000"\.\n$/),
      fails(["keys", "rotate", revokedId, "--grace", "60"], /^keygate: KEY_NOT_ROTATABLE: Key key_\w+ is revoked; only a key that is not revoked, expired or already rotated can be rotated/),
      fails(["accounts", "create", "--name", "X", "--email", "not-an-email"], /^keygate: INVALID_EMAIL: "not-an-email" is not an email address\.\n$/),
      fails(["accounts", "create", "--name", "Acme again", "--email", "DEV@acme.test"], /^keygate: EMAIL_TAKEN: An account with email DEV@acme\.test exists already\.\n$/),
      fails(["keys", "import", "--api", "demo", "missing.csv"], /^keygate: missing\.csv: no such file\n$/),
      fails(["keys", "import", "--api", "demo", "."], /^keygate: \.: is a folder, not a file\n$/),
    ]);
    const kg = await open();
    try {
      assert.equal((await kg.keys.list()).data.length, 1, "only the key made in before()");
      assert.equal((await kg.accounts.list()).data.length, 1);
    } finally {
      await kg.close();
    }
  });

  test("a bad config file: the file, the field and what is wrong", async () => {
    const typed = config("typed.yaml", "apis:\n  - id: demo\n    keyFormat: { prefix: sk, length: long }\n");
    const unknown = config("unknown.yaml", "apis:\n  - id: demo\n    keyFormat: { prefix: sk }\n    scope: [a]\n");
    const yaml = config("broken.yaml", "apis: [\n  - id: demo\n");
    const unset = config("unset.yaml", "apis:\n  - id: demo\n    keyFormat:\n      prefix: ${KEYGATE_TEST_UNSET_PREFIX}\n");
    await Promise.all([
      fails(["keys", "list", "--config", unknown], new RegExp(`^keygate: INVALID_CONFIG: ${escape(unknown)}: apis\\[0\\]\\.scope: unknown field "scope"`)),
      fails(["keys", "list", "--config", yaml], new RegExp(`^keygate: INVALID_CONFIG: ${escape(yaml)}: not valid YAML at line \\d+, column \\d+`)),
      fails(["keys", "list", "--config", unset], new RegExp(`^keygate: INVALID_CONFIG: ${escape(unset)}: apis\\[0\\]\\.keyFormat\\.prefix: environment variable KEYGATE_TEST_UNSET_PREFIX is not set and has no default`)),
      fails(["keys", "list", "--config", join(dir, "nope.yaml")], /^keygate: INVALID_CONFIG: .*nope\.yaml: cannot read config/),
      fails(["keys", "list"], new RegExp(`^keygate: INVALID_CONFIG: ${escape(typed)}: apis\\[0\\]\\.keyFormat\\.length: Expected integer \\(got "long"\\)\\n$`), { KEYGATE_CONFIG: typed }),
    ]);
  });

  test("usage mistakes caught by the argument parser are one line too, with a pointer to --help", async () => {
    await Promise.all([
      fails(["keys", "create", "--api", "demo"], /^keygate: required option '--account <id>' not specified \(run with --help for usage\)\n$/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--nmae", "x"], /^keygate: unknown option '--nmae'/),
      fails(["bogus"], /^keygate: unknown command 'bogus' \(run with --help for usage\)\n$/),
      fails(["keys", "list", "--limit", "0"], /^keygate: option '--limit <n>' argument '0' is invalid\. --limit must be from 1 to 100/),
      fails(["keys", "list", "--limit", "101"], /--limit must be from 1 to 100/),
      fails(["keys", "list", "--cursor", "garbage"], /^keygate: option '--cursor <cursor>' argument 'garbage' is invalid\. pass the key_… id printed as "next" by the previous page/),
      fails(["accounts", "list", "--cursor", "key_0VbsvBC9Xav9yA0crtGsOv"], /pass the acc_… id printed as "next"/),
      fails(["keys", "rotate", "key_x", "--grace", "1h"], /--grace must be a whole number/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--rate-limit", "100"], /use LIMIT\/WINDOW, e\.g\. 1000\/1h/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--rate-limit", "0/1m"], /the limit must be from 1 to 1000000000/),
      fails(["keys", "create", "--api", "demo", "--account", accountId, "--rate-limit", "5/0s"], /the window must be from 1 second to 365 days/),
    ]);
  });
});
