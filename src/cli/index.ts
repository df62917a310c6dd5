#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { SingleBar, Presets } from "cli-progress";
import type { Keygate, KeyView } from "../keygate.js";
import { KeygateError } from "../lib/errors.js";
import { openKeygate, bundledConfig } from "./runtime.js";
import { serve } from "./serve.js";
import { readImportFile } from "./import-file.js";

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

interface Common { config?: string; data?: string; json?: boolean }

const out = (json: boolean | undefined, value: unknown, human: () => string): void => {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
};

/** Opens keygate, runs `fn`, and always closes it (flushing usage). */
async function withKeygate<T>(opts: Common, fn: (kg: Keygate) => Promise<T>): Promise<T> {
  const { keygate } = await openKeygate(opts);
  try {
    return await fn(keygate);
  } finally {
    await keygate.close();
  }
}

const list = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(",").map((s) => s.trim()).filter(Boolean)];
const int = (name: string) => (v: string): number => {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return Number(v);
};
const rateLimit = (v: string): { limit: number; windowSeconds: number } => {
  const m = /^(\d+)\/(\d+)(s|m|h|d)?$/.exec(v);
  if (!m) throw new InvalidArgumentError("use LIMIT/WINDOW, e.g. 1000/1h, 60/60s or 1000/3600");
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[3] ?? "s") as "s" | "m" | "h" | "d"];
  return { limit: Number(m[1]), windowSeconds: Number(m[2]) * unit };
};

function keyLine(k: KeyView): string {
  return [k.id, k.start ?? "(hash import)", k.environment, k.status, k.name ?? "-", k.scopes.join(",") || "-", k.lastUsedAt ?? "never"].join("  ");
}

const program = new Command()
  .name("keygate")
  .description("API-key authentication for API providers.")
  .version(pkg.version)
  .showHelpAfterError("(run with --help for usage)");

const common = (cmd: Command): Command => cmd
  .addOption(new Option("-c, --config <file>", `config file (default: $KEYGATE_CONFIG, ./keygate.yaml, else ${bundledConfig()})`))
  .addOption(new Option("-d, --data <dir>", "data folder holding keygate.db (default: $KEYGATE_DATA_DIR or ./data)"))
  .option("--json", "print JSON for scripts");

common(program.command("serve").description("run the keygate service (admin API, verify API, OpenAPI)"))
  .option("-p, --port <port>", "port to listen on (default: $PORT, the config's server.port, or 8080)")
  .option("-H, --host <host>", "address to bind (default: $KEYGATE_HOST, the config's server.host, or 127.0.0.1)")
  .action((opts) => serve(opts));

const accounts = program.command("accounts").description("manage accounts (your customers)");
common(accounts.command("create").description("create an account"))
  .requiredOption("--name <name>", "display name")
  .requiredOption("--email <email>", "contact email (unique)")
  .action((opts: Common & { name: string; email: string }) => withKeygate(opts, async (kg) => {
    if (!/^[^\s@]+@[^\s@]+$/.test(opts.email)) throw new KeygateError("INVALID_EMAIL", `${JSON.stringify(opts.email)} is not an email address.`);
    const a = await kg.accounts.create({ name: opts.name, email: opts.email });
    out(opts.json, a, () => `${a.id}  ${a.name} <${a.email}>`);
  }));
common(accounts.command("list").description("list accounts"))
  .option("--limit <n>", "page size (1-100)", int("--limit"), 50)
  .option("--cursor <cursor>", "continue after this cursor")
  .action((opts: Common & { limit: number; cursor?: string }) => withKeygate(opts, async (kg) => {
    const page = await kg.accounts.list({ limit: opts.limit, cursor: opts.cursor });
    out(opts.json, page, () => [...page.data.map((a) => `${a.id}  ${a.name} <${a.email}>`), ...(page.nextCursor ? [`next: --cursor ${page.nextCursor}`] : [])].join("\n") || "no accounts");
  }));

const keys = program.command("keys").description("manage API keys");
common(keys.command("create").description("create a key; the secret is printed once"))
  .requiredOption("--api <id>", "API id from the config")
  .requiredOption("--account <id>", "account id (acc_…)")
  .option("--name <name>", "a label")
  .option("--env <environment>", "environment (default: the API's first)")
  .option("--scopes <list>", "comma-separated scopes (repeatable)", list)
  .option("--ip <list>", "allowed IPs/CIDRs, comma-separated (repeatable)", list)
  .option("--expires <date>", "expiry, ISO 8601 (e.g. 2027-01-01T00:00:00Z)")
  .option("--rate-limit <limit/window>", "per-key limit, e.g. 1000/1h", rateLimit)
  .action((opts: Common & { api: string; account: string; name?: string; env?: string; scopes?: string[]; ip?: string[]; expires?: string; rateLimit?: { limit: number; windowSeconds: number } }) => withKeygate(opts, async (kg) => {
    const k = await kg.keys.create({ api: opts.api, accountId: opts.account, name: opts.name, environment: opts.env, scopes: opts.scopes, ipAllowlist: opts.ip, expiresAt: opts.expires, rateLimit: opts.rateLimit });
    out(opts.json, k, () => `${k.key}\n\n${k.id} (${k.environment}) created. The key above is shown only this once: store it now.`);
  }));
common(keys.command("list").description("list keys (never their secrets)"))
  .option("--api <id>", "only this API")
  .option("--account <id>", "only this account")
  .option("--limit <n>", "page size (1-100)", int("--limit"), 50)
  .option("--cursor <cursor>", "continue after this cursor")
  .action((opts: Common & { api?: string; account?: string; limit: number; cursor?: string }) => withKeygate(opts, async (kg) => {
    const page = await kg.keys.list({ api: opts.api, accountId: opts.account, limit: opts.limit, cursor: opts.cursor });
    out(opts.json, page, () => [...page.data.map(keyLine), ...(page.nextCursor ? [`next: --cursor ${page.nextCursor}`] : [])].join("\n") || "no keys");
  }));
common(keys.command("revoke").description("revoke a key at once").argument("<id>", "key id (key_…)"))
  .action((id: string, opts: Common) => withKeygate(opts, async (kg) => {
    const k = await kg.keys.revoke(id);
    out(opts.json, k, () => `${k.id} revoked at ${k.revokedAt}`);
  }));
common(keys.command("rotate").description("issue a successor; the old key works for the grace period").argument("<id>", "key id (key_…)"))
  .option("--grace <seconds>", "grace period for the old key in seconds", int("--grace"), 0)
  .action((id: string, opts: Common & { grace: number }) => withKeygate(opts, async (kg) => {
    const r = await kg.keys.rotate(id, { gracePeriodSeconds: opts.grace });
    out(opts.json, r, () => `${r.key.key}\n\n${r.key.id} replaces ${id}, which works until ${r.previous.graceEndsAt}. The key above is shown only this once.`);
  }));
common(keys.command("import").description("import existing keys or SHA-256 hashes from JSON, JSON Lines or CSV").argument("<file>", "file to import"))
  .requiredOption("--api <id>", "API id the keys belong to")
  .option("--create-accounts", "create accounts for unknown accountEmail values")
  .option("--batch <n>", "keys per transaction", int("--batch"), 1000)
  .action((file: string, opts: Common & { api: string; createAccounts?: boolean; batch: number }) => withKeygate(opts, async (kg) => {
    const rows = readImportFile(file);
    if (rows.length === 0) throw new KeygateError("EMPTY_IMPORT", `${file} holds no keys.`);
    const emails = new Map<string, string>();
    const bar = process.stderr.isTTY && !opts.json && rows.length > opts.batch ? new SingleBar({ format: "importing [{bar}] {value}/{total} keys  {eta_formatted} left", hideCursor: true }, Presets.shades_classic) : null;
    bar?.start(rows.length, 0);
    let imported = 0;
    try {
      for (let i = 0; i < rows.length; i += Math.max(1, opts.batch)) {
        const chunk = rows.slice(i, i + Math.max(1, opts.batch));
        const inputs = [];
        for (const [j, row] of chunk.entries()) {
          const { accountEmail, ...rest } = row;
          let accountId = rest.accountId;
          if (!accountId && accountEmail) {
            accountId = emails.get(accountEmail) ?? (await kg.store.getAccountByEmail(accountEmail))?.id;
            if (!accountId && opts.createAccounts) accountId = (await kg.accounts.create({ name: accountEmail, email: accountEmail })).id;
            if (!accountId) throw new KeygateError("UNKNOWN_ACCOUNT", `row ${i + j + 1}: no account with email ${accountEmail} (pass --create-accounts to create it).`);
            emails.set(accountEmail, accountId);
          }
          if (!accountId) throw new KeygateError("INVALID_IMPORT", `row ${i + j + 1}: give accountId or accountEmail.`);
          inputs.push({ ...rest, accountId });
        }
        try {
          await kg.keys.import(opts.api, inputs);
        } catch (e) {
          if (e instanceof KeygateError) {
            throw new KeygateError(e.code, `${e.message.replace(/keys\[(\d+)\]/, (_m, n: string) => `row ${i + Number(n) + 1}`)} ${imported} keys before this batch were imported; fix the row and re-run with the rest.`);
          }
          throw e;
        }
        imported += chunk.length;
        bar?.update(imported);
      }
    } finally {
      bar?.stop();
    }
    out(opts.json, { imported }, () => `imported ${imported} keys into ${opts.api}`);
  }));

program.parseAsync(process.argv).catch((e: unknown) => {
  const message = e instanceof KeygateError ? `${e.code}: ${e.message}` : (e as Error).message ?? String(e);
  process.stderr.write(`keygate: ${message}\n`);
  process.exit(1);
});
