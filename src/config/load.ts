import { readFileSync } from "node:fs";
import { Value, ValueErrorType } from "@sinclair/typebox/value";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { ConfigError } from "../lib/errors.js";
import { ConfigSchema } from "./schema.js";
import type { ApiConfig, KeygateConfig } from "./schema.js";
import { checksumLength } from "../keys/checksum.js";
import { VERDICT_CODES } from "../verify/codes.js";

/** The verdict codes a client can be denied with: the keys `errorCodes` may rename. */
const DENIAL_CODES: readonly string[] = VERDICT_CODES.filter((c) => c !== "VALID");

// Innermost `${...}` only (no `$`, `{` or `}` in the default), applied until none is left, so
// defaults may nest: ${SANDBOX_URL:-${UPSTREAM_URL}}.
const VAR = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}/g;

/** `a.b[0].c` from a JSON pointer `/a/b/0/c`, for error messages a person can follow. */
function pointerToPath(pointer: string): string {
  const parts = pointer.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || "(root)";
}

/**
 * Replaces `${VAR}` and `${VAR:-default}` in every string of the parsed document. Done after
 * YAML parsing, so a variable's value is always data and never YAML syntax.
 */
function interpolate(node: unknown, env: NodeJS.ProcessEnv, file: string, path: string): unknown {
  if (typeof node === "string") {
    let text = node;
    for (let depth = 0; depth < 8; depth++) {
      const next = text.replace(VAR, (_all, name: string, fallback: string | undefined) => {
        const value = env[name];
        if (value !== undefined && value !== "") return value.replace(/\$\{/g, "$\u200b{");
        if (fallback !== undefined) return fallback;
        // Not an error yet: inside ${A:-${B}} with A set, B is never needed (as in a shell).
        return `\u0000${name}\u0000`;
      });
      if (next === text) break;
      text = next;
    }
    const missing = /\u0000([A-Za-z0-9_]+)\u0000/.exec(text)?.[1];
    if (missing !== undefined) {
      throw new ConfigError(`${file}: ${path || "(root)"}: environment variable ${missing} is not set and has no default (write \${${missing}:-default})`);
    }
    // A value that itself contains "${" is data, not another variable: restore it untouched.
    return text.replace(/\$\u200b\{/g, "${");
  }
  if (Array.isArray(node)) return node.map((v, i) => interpolate(v, env, file, `${path}[${i}]`));
  if (node && typeof node === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = interpolate(v, env, file, path ? `${path}.${k}` : k);
    return out;
  }
  return node;
}

/** Rules JSON Schema cannot say: cross-field consistency of each API. */
function checkApi(api: ApiConfig, at: string, fail: (path: string, msg: string) => never): void {
  const f = api.keyFormat;
  if (f.alphabet === "uuid") {
    if (f.checksum) fail(`${at}.keyFormat.checksum`, "a uuid body has no room for a checksum; set checksum: false or use base62/hex");
    f.length = 36;
  } else {
    const random = f.length - (f.checksum ? checksumLength(f.alphabet) : 0);
    const bits = random * Math.log2(f.alphabet === "hex" ? 16 : 62);
    if (bits < 128) fail(`${at}.keyFormat.length`, `a body of ${f.length} ${f.alphabet} characters${f.checksum ? " with a checksum" : ""} carries ${Math.floor(bits)} random bits; at least 128 are required (base62: 22 characters, hex: 32, plus the checksum)`);
  }
  if (f.importPattern !== undefined) {
    try { new RegExp(f.importPattern); } catch (e) { fail(`${at}.keyFormat.importPattern`, `not a valid regular expression: ${(e as Error).message}`); }
  }
  if (!f.environmentInKey && f.prefix === "" && f.alphabet !== "uuid" && f.length < 20) {
    fail(`${at}.keyFormat.length`, "keys without any prefix need a body of at least 20 characters");
  }
  const scopes = new Set(api.scopes.map((s) => (typeof s === "string" ? s : s.name)));
  for (const [i, s] of api.defaultScopes.entries()) {
    if (!scopes.has(s)) fail(`${at}.defaultScopes[${i}]`, `scope ${JSON.stringify(s)} is not declared in ${at}.scopes`);
  }
  for (const env of Object.keys(api.environmentRateLimits ?? {})) {
    if (!f.environments.includes(env)) fail(`${at}.environmentRateLimits.${env}`, `unknown environment; declared: ${f.environments.join(", ")}`);
  }
  for (const [feature, granted] of Object.entries(api.features ?? {})) {
    for (const [i, s] of granted.entries()) {
      if (!scopes.has(s)) fail(`${at}.features.${feature}[${i}]`, `scope ${JSON.stringify(s)} is not declared in ${at}.scopes`);
    }
  }
  // A misspelt code would otherwise be ignored in silence and clients would get the default.
  for (const code of Object.keys(api.errorCodes ?? {})) {
    if (!DENIAL_CODES.includes(code)) {
      fail(`${at}.errorCodes.${code}`, `${JSON.stringify(code)} is not a verdict code a request can be denied with; one of: ${DENIAL_CODES.join(", ")} (docs/verdict-codes.md)`);
    }
  }
  const jwt = api.credentials.findIndex((c) => c.type === "jwt");
  if (jwt !== -1 && !api.tokens) fail(`${at}.credentials[${jwt}]`, `the jwt scheme needs ${at}.tokens (its token endpoints, lifetime and algorithm)`);
  const paths = new Set<string>();
  for (const [i, e] of (api.tokens?.endpoints ?? []).entries()) {
    if (paths.has(e.path)) fail(`${at}.tokens.endpoints[${i}].path`, `${e.path} is used by another token endpoint`);
    paths.add(e.path);
    if (e.path === api.introspection?.path) fail(`${at}.tokens.endpoints[${i}].path`, `${e.path} is also ${at}.introspection.path`);
  }
}

/**
 * Validates a config object (already parsed from YAML or built in code), applies defaults and
 * returns it typed. `source` names the file in error messages.
 *
 * @example
 * const config = parseConfig({ apis: [{ id: "payments" }] });
 */
export function parseConfig(raw: unknown, source = "config", env: NodeJS.ProcessEnv = process.env): KeygateConfig {
  const fail = (path: string, msg: string): never => { throw new ConfigError(`${source}: ${path}: ${msg}`, { file: source, field: path }); };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail("(root)", "expected a mapping with at least `apis:`");
  const interpolated = interpolate(raw, env, source, "");
  const value = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, Value.Clone(interpolated)));
  let first = Value.Errors(ConfigSchema, value).First();
  // A union reports only "Expected union value"; the variant that got furthest says more.
  while (first && first.errors.length > 0) {
    const deeper = first.errors.map((it) => it.First()).filter((e): e is NonNullable<typeof e> => e !== undefined)
      .sort((a, b) => Number(a.path.endsWith("/type")) - Number(b.path.endsWith("/type")) || b.path.length - a.path.length)[0];
    if (!deeper || deeper.path.length <= first.path.length) break;
    first = deeper;
  }
  if (first) {
    // TypeBox reports an unknown property at its own path, with the parent's schema.
    const unknownField = first.type === ValueErrorType.ObjectAdditionalProperties
      ? first.path.slice(first.path.lastIndexOf("/") + 1).replace(/~1/g, "/").replace(/~0/g, "~")
      : null;
    const msg = unknownField !== null ? `unknown field ${JSON.stringify(unknownField)}` : first.message;
    fail(pointerToPath(first.path), `${msg} (got ${JSON.stringify(first.value)?.slice(0, 80)})`);
  }
  const config = value as KeygateConfig;
  const ids = new Set<string>();
  config.apis.forEach((api, i) => {
    if (ids.has(api.id)) fail(`apis[${i}].id`, `duplicate api id ${JSON.stringify(api.id)}`);
    ids.add(api.id);
    checkApi(api, `apis[${i}]`, fail);
  });
  return config;
}

/** Reads, interpolates and validates a YAML config file. */
export function loadConfigFile(file: string, env: NodeJS.ProcessEnv = process.env): KeygateConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`${file}: cannot read config: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "";
    throw new ConfigError(`${file}: not valid YAML${where}: ${(e as Error).message.split("\n")[0]}`);
  }
  return parseConfig(raw, file, env);
}

/** The names of an API's scopes, whichever form the config used. */
export const scopeNames = (api: ApiConfig): string[] => api.scopes.map((s) => (typeof s === "string" ? s : s.name));
