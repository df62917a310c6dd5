#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, InvalidArgumentError, Option } from "commander";
import { SingleBar, Presets } from "cli-progress";
import type { ErrorObject, ValidateFunction } from "ajv";
import type { Keygate, KeyView } from "../keygate.js";
import { KeygateError } from "../lib/errors.js";
import { RateLimitSchema } from "../config/schema.js";
import { ImportKeyItem } from "../http/schemas.js";
import { readImportFile } from "./import-file.js";
import type { ImportRow } from "./import-file.js";

// The same file as runtime.ts's bundledConfig(), named without loading runtime.ts (and every store driver) at start-up.
const bundledConfig = (): string => fileURLToPath(new URL("../../keygate.yaml", import.meta.url));

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

interface Common { config?: string; data?: string; json?: boolean }

const out = (json: boolean | undefined, value: unknown, human: () => string): void => {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
};

/** Opens keygate, runs `fn`, and always closes it (flushing usage). */
async function withKeygate<T>(opts: Common, fn: (kg: Keygate) => Promise<T>): Promise<T> {
  // Loaded on use: a usage error or a bad import file is reported without loading the store drivers.
  const { openKeygate } = await import("./runtime.js");
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
// The same bounds as the admin API's: the library stores whatever it is given.
const MAX_LIMIT = RateLimitSchema.properties.limit.maximum!;
const MAX_WINDOW = RateLimitSchema.properties.windowSeconds.maximum!;
const rateLimit = (v: string): { limit: number; windowSeconds: number } => {
  const m = /^(\d+)\/(\d+)(s|m|h|d)?$/.exec(v);
  if (!m) throw new InvalidArgumentError("use LIMIT/WINDOW, e.g. 1000/1h, 60/60s or 1000/3600");
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[(m[3] ?? "s") as "s" | "m" | "h" | "d"];
  const limit = Number(m[1]);
  const windowSeconds = Number(m[2]) * unit;
  if (limit < 1 || limit > MAX_LIMIT) throw new InvalidArgumentError(`the limit must be from 1 to ${MAX_LIMIT}`);
  if (windowSeconds < 1 || windowSeconds > MAX_WINDOW) throw new InvalidArgumentError(`the window must be from 1 second to ${MAX_WINDOW / 86_400} days`);
  return { limit, windowSeconds };
};
// As GET /v1/keys: a page size out of range or a cursor that is no id is an error, not an empty or clamped page.
const pageSize = (v: string): number => {
  const n = int("--limit")(v);
  if (n < 1 || n > 100) throw new InvalidArgumentError("--limit must be from 1 to 100");
  return n;
};
const cursorOf = (prefix: string) => (v: string): string => {
  if (!new RegExp(`^${prefix}_[0-9A-Za-z]{1,60}$`).test(v)) throw new InvalidArgumentError(`pass the ${prefix}_… id printed as "next" by the previous page`);
  return v;
};

/** Reads an import file, naming the file in every error. Done before the database is opened. */
function readRows(file: string): ImportRow[] {
  try {
    return readImportFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new Error(`${file}: no such file`);
    if (code === "EISDIR") throw new Error(`${file}: is a folder, not a file`);
    if (code === "EACCES") throw new Error(`${file}: permission denied`);
    const message = (e as Error).message;
    throw new Error(message.startsWith(`${file}:`) ? message : `${file}: ${message}`);
  }
}

const IMPORT_FIELDS = ["accountId", "accountEmail", ...Object.keys(ImportKeyItem.properties).filter((f) => f !== "accountId")];
let validateRow: ValidateFunction | undefined;

/**
 * Checks every row against the schema of POST /v1/keys/import before anything is written:
 * a misspelt column (`ipAllowList`) would otherwise be dropped, and the key imported without
 * the restriction it was meant to carry. Also refuses a secret or hash that appears twice.
 */
async function checkRows(rows: ImportRow[]): Promise<void> {
  if (!validateRow) {
    // Loaded here, not at start-up: only an import needs a JSON-schema validator.
    const [{ Ajv }, { default: formats }] = await Promise.all([import("ajv"), import("ajv-formats")]);
    const ajv = new Ajv({ allErrors: false });
    formats.default(ajv, ["date-time"]);
    validateRow = ajv.compile(ImportKeyItem);
  }
  const seen = new Map<string, number>();
  for (const [i, row] of rows.entries()) {
    const at = `row ${i + 1}`;
    if (row === null || typeof row !== "object" || Array.isArray(row)) throw new KeygateError("INVALID_IMPORT", `${at}: expected an object with accountId (or accountEmail) and key or hash.`);
    const { accountEmail, ...rest } = row;
    if (accountEmail !== undefined && typeof accountEmail !== "string") throw new KeygateError("INVALID_IMPORT", `${at}: accountEmail must be a string.`);
    if (rest.accountId === undefined && !accountEmail) throw new KeygateError("INVALID_IMPORT", `${at}: give accountId or accountEmail.`);
    if (!validateRow({ accountId: "acc_placeholder", ...rest })) throw new KeygateError("INVALID_IMPORT", `${at}: ${rowError(validateRow.errors![0]!)}`);
    if ((rest.key === undefined) === (rest.hash === undefined)) throw new KeygateError("INVALID_IMPORT", `${at}: give exactly one of "key" (the secret) or "hash" (its SHA-256 in hex).`);
    // Never echo the secret: name the rows only.
    const id = rest.key !== undefined ? `key:${rest.key}` : `hash:${rest.hash!.toLowerCase()}`;
    const first = seen.get(id);
    if (first !== undefined) throw new KeygateError("DUPLICATE_KEY", `${at}: the same ${rest.key !== undefined ? "key" : "hash"} as row ${first}; nothing was imported.`);
    seen.set(id, i + 1);
  }
}

function rowError(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  if (e.keyword === "additionalProperties") return `unknown field ${JSON.stringify(params.additionalProperty)}; known: ${IMPORT_FIELDS.join(", ")}.`;
  const field = e.instancePath.split("/").slice(1).map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
  if (e.keyword === "required") return `${field ? `${field}.` : ""}${String(params.missingProperty)} is required.`;
  return `${field || "row"}: ${e.message ?? "invalid"}.`;
}

function keyLine(k: KeyView): string {
  return [k.id, k.start ?? "(hash import)", k.environment, k.status, k.name ?? "-", k.scopes.join(",") || "-", k.lastUsedAt ?? "never"].join("  ");
}

const program = new Command()
  .name("keygate")
  .description("API-key authentication for API providers.")
  .version(pkg.version)
  // Usage errors are one line too, like every other error (subcommands inherit this).
  .configureOutput({ outputError: (message, write) => write(`keygate: ${message.replace(/^error: /, "").replace(/\s*\n\s*/g, " ").trim()} (run with --help for usage)\n`) });

const common = (cmd: Command): Command => cmd
  .addOption(new Option("-c, --config <file>", `config file (default: $KEYGATE_CONFIG, ./keygate.yaml, else ${bundledConfig()})`))
  .addOption(new Option("-d, --data <dir>", "data folder holding keygate.db (default: $KEYGATE_DATA_DIR or ./data)"))
  .option("--json", "print JSON for scripts");

common(program.command("serve").description("run the keygate service (admin API, verify API, OpenAPI)"))
  .option("-p, --port <port>", "port to listen on (default: $PORT, the config's server.port, or 8080)")
  .option("-H, --host <host>", "address to bind (default: $KEYGATE_HOST, the config's server.host, or 127.0.0.1)")
  // Loaded only here: the HTTP stack is not needed by the one-shot commands, which start faster without it.
  .action(async (opts) => (await import("./serve.js")).serve(opts));

const accounts = program.command("accounts").description("manage accounts (your customers)");
common(accounts.command("create").description("create an account"))
  .requiredOption("--name <name>", "display name")
  .requiredOption("--email <email>", "contact email (unique)")
  .action(async (opts: Common & { name: string; email: string }) => {
    if (!/^[^\s@]+@[^\s@]+$/.test(opts.email)) throw new KeygateError("INVALID_EMAIL", `${JSON.stringify(opts.email)} is not an email address.`);
    await withKeygate(opts, async (kg) => {
      const a = await kg.accounts.create({ name: opts.name, email: opts.email });
      out(opts.json, a, () => `${a.id}  ${a.name} <${a.email}>`);
    });
  });
common(accounts.command("list").description("list accounts"))
  .option("--limit <n>", "page size (1-100)", pageSize, 50)
  .option("--cursor <cursor>", "continue after this cursor", cursorOf("acc"))
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
  .option("--limit <n>", "page size (1-100)", pageSize, 50)
  .option("--cursor <cursor>", "continue after this cursor", cursorOf("key"))
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
  .action(async (file: string, opts: Common & { api: string; createAccounts?: boolean; batch: number }) => {
    const rows = readRows(file);
    if (rows.length === 0) throw new KeygateError("EMPTY_IMPORT", `${file} holds no keys.`);
    await checkRows(rows);
    await withKeygate(opts, async (kg) => {
      // Before anything is written, not after --create-accounts has made accounts for nothing.
      if (!kg.apis.has(opts.api)) throw new KeygateError("UNKNOWN_API", `No API with id ${JSON.stringify(opts.api)} is configured; known: ${[...kg.apis.keys()].join(", ")}. Nothing was imported.`);
      const emails = new Map<string, string>();
      const batch = Math.max(1, opts.batch);
      const bar = process.stderr.isTTY && !opts.json && rows.length > batch ? new SingleBar({ format: "importing [{bar}] {value}/{total} keys  {eta_formatted} left", hideCursor: true }, Presets.shades_classic) : null;
      bar?.start(rows.length, 0);
      let imported = 0;
      try {
        for (let i = 0; i < rows.length; i += batch) {
          const chunk = rows.slice(i, i + batch);
          try {
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
              inputs.push({ ...rest, accountId: accountId! });
            }
            await kg.keys.import(opts.api, inputs);
          } catch (e) {
            if (e instanceof KeygateError) {
              const where = e.message.replace(/keys\[(\d+)\](\.?)/, (_m, n: string, dot: string) => `row ${i + Number(n) + 1}${dot ? ", " : ""}`);
              // Each batch is one transaction: say exactly what is in the store now.
              const done = imported === 0 ? "Nothing was imported." : `Rows 1-${imported} were imported; fix the row and re-run with the rows after ${imported}.`;
              throw new KeygateError(e.code, `${where} ${done}`);
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
    });
  });

program.parseAsync(process.argv).catch((e: unknown) => {
  const message = e instanceof KeygateError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
  // One line, never a stack trace.
  process.stderr.write(`keygate: ${message.replace(/\s*\n\s*/g, " ").trim()}\n`);
  process.exit(1);
});
