/**
 * Loading keygate.yaml: defaults, ${VAR} interpolation, and errors that name the file and the
 * field a person has to fix.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { loadConfigFile, parseConfig } from "../../src/config/load.js";
import { ConfigError, KeygateError } from "../../src/lib/errors.js";
import { ANALYTICS_DEFAULTS } from "../../src/analytics/index.js";

/** Asserts that `fn` throws a ConfigError whose message contains every fragment. */
function assertConfigError(fn: () => unknown, ...fragments: (string | RegExp)[]): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.ok(caught instanceof KeygateError);
  assert.equal(caught.code, "INVALID_CONFIG");
  for (const f of fragments) {
    if (typeof f === "string") assert.ok(caught.message.includes(f), `${JSON.stringify(caught.message)} lacks ${JSON.stringify(f)}`);
    else assert.match(caught.message, f);
  }
  return caught;
}

const parse = (raw: unknown, env: NodeJS.ProcessEnv = {}) => parseConfig(raw, "keygate.yaml", env);

describe("defaults", () => {
  test("a config with only an api id gets every documented default", () => {
    const config = parse({ apis: [{ id: "payments" }] });
    assert.deepEqual(config.server, { host: "127.0.0.1", port: 8080, bodyLimitBytes: 10 * 1024 * 1024, trustedProxies: [], shutdownTimeoutMs: 25_000 });
    assert.deepEqual(config.security, {});
    assert.deepEqual(config.cache, { maxKeys: 100_000, negativeTtlSeconds: 10, maxStaleSeconds: 60, changePollMs: 1000 });
    assert.deepEqual(config.usage, { flushIntervalMs: 5000 });
    // The analytics section's defaults are the pipeline's own (rawLogSampling: 1 when unset).
    assert.deepEqual(config.analytics, {
      flushIntervalMs: 1000, maxQueue: 10_000, retentionDays: 30, minuteRetentionDays: 7, hourRetentionDays: 90, dayRetentionDays: 0,
      pruneIntervalMs: 3_600_000, heartbeatSeconds: 15,
    });
    assert.deepEqual({ ...config.analytics, rawLogSampling: 1 }, { ...ANALYTICS_DEFAULTS });
    assert.deepEqual(config.database, { maxConnections: 10 });
    assert.deepEqual(config.redis, { keyPrefix: "keygate:", failureMode: "closed" });
    const api = config.apis[0]!;
    assert.equal(api.id, "payments");
    assert.deepEqual(api.keyFormat, {
      prefix: "", separator: "_", environments: ["live", "test"], environmentInKey: true, length: 32, alphabet: "base62", checksum: false,
    });
    assert.deepEqual(api.scopes, []);
    assert.deepEqual(api.defaultScopes, []);
    assert.equal(api.rateLimit, undefined);
    assert.deepEqual(api.lockout, { enabled: true, maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 });
    assert.deepEqual(api.credentials, [{ type: "bearer" }]);
    assert.equal(api.errorStyle, "problem");
    assert.deepEqual(api.rateLimitHeaders, { xRateLimit: true, ietf: false });
    assert.equal(api.pathPrefix, "/");
    assert.equal(api.upstreamTimeoutMs, 30_000);
  });

  test("fields given keep their values and only missing siblings are defaulted", () => {
    const config = parse({ apis: [{ id: "mail", keyFormat: { prefix: "ck", alphabet: "hex", length: 40 }, lockout: { maxAttempts: 3 } }] });
    const api = config.apis[0]!;
    assert.deepEqual(api.keyFormat, { prefix: "ck", separator: "_", environments: ["live", "test"], environmentInKey: true, length: 40, alphabet: "hex", checksum: false });
    assert.deepEqual(api.lockout, { enabled: true, maxAttempts: 3, windowSeconds: 900, blockSeconds: 900 });
  });

  test("a uuid key format has a body of 36 characters whatever length says", () => {
    const config = parse({ apis: [{ id: "topup", keyFormat: { alphabet: "uuid", environmentInKey: false } }] });
    assert.equal(config.apis[0]!.keyFormat.length, 36);
  });

  test("the input object is not modified", () => {
    const raw = { apis: [{ id: "payments", keyFormat: { prefix: "${P:-pk}" } }] };
    const copy = structuredClone(raw);
    parse(raw);
    assert.deepEqual(raw, copy);
  });
});

describe("environment interpolation", () => {
  test("${VAR} is replaced from the given environment", () => {
    const config = parse({ apis: [{ id: "a", upstream: "${UPSTREAM_URL}", name: "api at ${UPSTREAM_URL}/v1" }] }, { UPSTREAM_URL: "http://up.test" });
    assert.equal(config.apis[0]!.upstream, "http://up.test");
    assert.equal(config.apis[0]!.name, "api at http://up.test/v1");
  });

  test("${VAR:-default} uses the default when the variable is unset or empty", () => {
    const raw = { apis: [{ id: "a", upstream: "${UPSTREAM_URL:-http://fallback.test}" }] };
    assert.equal(parse(raw, {}).apis[0]!.upstream, "http://fallback.test");
    assert.equal(parse(raw, { UPSTREAM_URL: "" }).apis[0]!.upstream, "http://fallback.test");
    assert.equal(parse(raw, { UPSTREAM_URL: "http://set.test" }).apis[0]!.upstream, "http://set.test");
  });

  test("an empty default is allowed and gives an empty string", () => {
    const config = parse({ security: { hashSecret: "${KEYGATE_HASH_SECRET:-}" }, apis: [{ id: "a" }] });
    assert.equal(config.security.hashSecret, "");
  });

  test("numbers and booleans written as variables are converted to their types", () => {
    const config = parse({
      server: { port: "${PORT:-8081}" },
      apis: [{ id: "a", keyFormat: { length: "${LEN}", checksum: "${CHECKSUM}" }, rateLimit: { limit: "${LIMIT:-1000}", windowSeconds: 3600 } }],
    }, { LEN: "40", CHECKSUM: "true" });
    assert.equal(config.server.port, 8081);
    assert.equal(config.apis[0]!.keyFormat.length, 40);
    assert.equal(config.apis[0]!.keyFormat.checksum, true);
    assert.deepEqual(config.apis[0]!.rateLimit, { limit: 1000, windowSeconds: 3600 });
  });

  test("a variable's value is data: a ${...} inside it is not interpolated again", () => {
    const config = parse({ apis: [{ id: "a", name: "${NAME}" }] }, { NAME: "literal ${SECRET} here", SECRET: "leak" });
    assert.equal(config.apis[0]!.name, "literal ${SECRET} here");
  });

  test("defaults may nest: ${A:-${B}} takes A when set, else B", () => {
    const raw = { apis: [{ id: "a", upstream: { sandbox: "${SANDBOX_URL:-${UPSTREAM_URL}}", production: "${UPSTREAM_URL:-http://prod.test}" } }] };
    assert.deepEqual(parse(raw, { UPSTREAM_URL: "http://up.test" }).apis[0]!.upstream, { sandbox: "http://up.test", production: "http://up.test" });
    assert.deepEqual(parse(raw, { SANDBOX_URL: "http://sb.test", UPSTREAM_URL: "http://up.test" }).apis[0]!.upstream, { sandbox: "http://sb.test", production: "http://up.test" });
    // The inner variable is only needed when the outer one is unset, as in a shell.
    assert.deepEqual(parse(raw, { SANDBOX_URL: "http://sb.test" }).apis[0]!.upstream, { sandbox: "http://sb.test", production: "http://prod.test" });
    assertConfigError(() => parse(raw, {}), "keygate.yaml", "apis[0].upstream.sandbox", "UPSTREAM_URL");
  });

  test("a missing variable without a default is a ConfigError naming the file, the field path and the variable", () => {
    const error = assertConfigError(
      () => parse({ apis: [{ id: "a" }, { id: "b", upstream: "${UPSTREAM_URL}" }] }),
      "keygate.yaml", "apis[1].upstream", "UPSTREAM_URL", "${UPSTREAM_URL:-default}",
    );
    assert.equal(error.status, 500);
    assertConfigError(() => parse({ apis: [{ id: "a" }] , security: { hashSecret: "${HASH_SECRET}" } }), "security.hashSecret", "HASH_SECRET");
    assertConfigError(() => parse({ apis: [{ id: "a", scopes: ["read", "${EXTRA_SCOPE}"] }] }), "apis[0].scopes[1]", "EXTRA_SCOPE");
  });

  test("a variable set to the empty string counts as missing", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", upstream: "${UPSTREAM_URL}" }] }, { UPSTREAM_URL: "" }), "UPSTREAM_URL");
  });

  test("process.env is the default environment", () => {
    const name = `KEYGATE_TEST_VAR_${process.pid}`;
    process.env[name] = "from-process";
    try {
      assert.equal(parseConfig({ apis: [{ id: "a", name: `\${${name}}` }] }).apis[0]!.name, "from-process");
    } finally {
      delete process.env[name];
    }
  });
});

describe("validation errors", () => {
  test("an unknown field is rejected with its name and path", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", rateLimt: { limit: 1, windowSeconds: 1 } }] }), "keygate.yaml", "apis[0].rateLimt", "unknown field \"rateLimt\"");
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { lenght: 40 } }] }), "apis[0].keyFormat.lenght", "\"lenght\"");
    assertConfigError(() => parse({ serverr: {}, apis: [{ id: "a" }] }), "serverr");
    assertConfigError(() => parse({ apis: [{ id: "a", scopes: [{ name: "read", descr: "x" }] }] }), "apis[0].scopes[0]", "descr");
  });

  test("a value of the wrong type names its path, e.g. apis[0].keyFormat.length", () => {
    const error = assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { length: "forty" } }] }), "keygate.yaml: apis[0].keyFormat.length:", "integer", "\"forty\"");
    assert.deepEqual(error.details, { file: "keygate.yaml", field: "apis[0].keyFormat.length" });
    assertConfigError(() => parse({ apis: [{ id: "a" }, { id: "b", rateLimit: { limit: "many", windowSeconds: 60 } }] }), "apis[1].rateLimit.limit");
    assertConfigError(() => parse({ server: { port: 70000 }, apis: [{ id: "a" }] }), "server.port");
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { alphabet: "base64" } }] }), "apis[0].keyFormat.alphabet", "\"base64\"");
    assertConfigError(() => parse({ apis: [{ id: "Payments API" }] }), "apis[0].id");
  });

  test("a config without apis, or with an empty list, is rejected", () => {
    assertConfigError(() => parse({}), "apis");
    assertConfigError(() => parse({ apis: [] }), "apis");
    assertConfigError(() => parse(null), "(root)");
    assertConfigError(() => parse([{ id: "a" }]), "(root)");
    assertConfigError(() => parse("apis: []"), "(root)");
  });

  test("a duplicate api id is rejected at the second occurrence", () => {
    assertConfigError(() => parse({ apis: [{ id: "pay" }, { id: "mail" }, { id: "pay" }] }), "apis[2].id", "duplicate api id \"pay\"");
  });

  test("a uuid body with a checksum is rejected", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { alphabet: "uuid", checksum: true } }] }), "apis[0].keyFormat.checksum", "uuid");
  });

  test("a key body with fewer than 128 random bits is rejected", () => {
    // base62: 22 characters carry 131 bits, 21 carry 125; hex: 32 carry exactly 128.
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { length: 21 } }] }), "apis[0].keyFormat.length", "125 random bits", "128");
    assert.equal(parse({ apis: [{ id: "a", keyFormat: { length: 22 } }] }).apis[0]!.keyFormat.length, 22);
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { alphabet: "hex", length: 31 } }] }), "apis[0].keyFormat.length");
    assert.equal(parse({ apis: [{ id: "a", keyFormat: { alphabet: "hex", length: 32 } }] }).apis[0]!.keyFormat.length, 32);
  });

  test("the checksum's characters do not count as random bits", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { length: 27, checksum: true } }] }), "apis[0].keyFormat.length", "with a checksum");
    assert.ok(parse({ apis: [{ id: "a", keyFormat: { length: 28, checksum: true } }] }));
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { alphabet: "hex", length: 39, checksum: true } }] }), "apis[0].keyFormat.length");
    assert.ok(parse({ apis: [{ id: "a", keyFormat: { alphabet: "hex", length: 40, checksum: true } }] }));
  });

  test("an importPattern that is not a regular expression is rejected", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", keyFormat: { importPattern: "^[A-Z0-9{8}(" } }] }), "apis[0].keyFormat.importPattern", "not a valid regular expression");
    assert.ok(parse({ apis: [{ id: "a", keyFormat: { importPattern: "^[A-Z0-9]{8}-[A-Z0-9]{4}$" } }] }));
  });

  test("defaultScopes must be declared in scopes", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", scopes: ["read", { name: "write" }], defaultScopes: ["read", "admin"] }] }), "apis[0].defaultScopes[1]", "\"admin\"", "not declared");
    assert.deepEqual(parse({ apis: [{ id: "a", scopes: ["read", { name: "write" }], defaultScopes: ["write"] }] }).apis[0]!.defaultScopes, ["write"]);
  });

  test("environmentRateLimits may only name declared environments", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", environmentRateLimits: { prod: { limit: 1, windowSeconds: 1 } } }] }), "apis[0].environmentRateLimits.prod", "live, test");
  });

  test("errorCodes keys must be verdict codes a request can be denied with", () => {
    const misspelt = assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { NOT_FOUN: { code: "UNKNOWN_KEY" } } }] }),
      "keygate.yaml: apis[0].errorCodes.NOT_FOUN:", "\"NOT_FOUN\" is not a verdict code", "NOT_FOUND, EXPIRED");
    assert.deepEqual(misspelt.details, { file: "keygate.yaml", field: "apis[0].errorCodes.NOT_FOUN" });
    assertConfigError(() => parse({ apis: [{ id: "a" }, { id: "b", errorCodes: { VALID: { status: 401 } } }] }), "apis[1].errorCodes.VALID", "not a verdict code");
    assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { not_found: { code: "X" } } }] }), "apis[0].errorCodes.not_found", "not a verdict code");
    const ok = parse({ apis: [{ id: "a", errorCodes: { NOT_FOUND: { code: "UNKNOWN_KEY", status: 404, message: "No such key." }, TOKEN_EXPIRED: {} } }] });
    assert.deepEqual(ok.apis[0]!.errorCodes, { NOT_FOUND: { code: "UNKNOWN_KEY", status: 404, message: "No such key." }, TOKEN_EXPIRED: {} });
  });

  test("an errorCodes status outside 400-599, an unknown field or an empty code is rejected with its path", () => {
    assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { NOT_FOUND: { status: 302 } } }] }), "apis[0].errorCodes.NOT_FOUND.status", "400", "302");
    assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { REVOKED: { status: 600 } } }] }), "apis[0].errorCodes.REVOKED.status", "599", "600");
    assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { REVOKED: { stauts: 410 } } }] }), "apis[0].errorCodes.REVOKED.stauts", "unknown field \"stauts\"");
    assertConfigError(() => parse({ apis: [{ id: "a", errorCodes: { REVOKED: { code: "" } } }] }), "apis[0].errorCodes.REVOKED.code");
  });
});

describe("loadConfigFile", () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), "keygate-config-")); });
  after(() => { rmSync(dir, { recursive: true, force: true }); });

  const write = (name: string, text: string): string => {
    const file = join(dir, name);
    writeFileSync(file, text);
    return file;
  };

  test("reads, interpolates and validates a YAML file", () => {
    const file = write("ok.yaml", [
      "server:",
      "  port: ${PORT:-9000}",
      "apis:",
      "  - id: mail",
      "    keyFormat: { prefix: ck, alphabet: hex, length: 40 }",
      "    upstream: ${UPSTREAM_URL}",
      "",
    ].join("\n"));
    const config = loadConfigFile(file, { UPSTREAM_URL: "http://up.test" });
    assert.equal(config.server.port, 9000);
    assert.equal(config.apis[0]!.upstream, "http://up.test");
    assert.equal(config.apis[0]!.keyFormat.alphabet, "hex");
  });

  test("validation errors name the file that was read", () => {
    const file = write("bad-field.yaml", "apis:\n  - id: mail\n    keyFormat: { length: forty }\n");
    const error = assertConfigError(() => loadConfigFile(file, {}), `${file}: apis[0].keyFormat.length:`);
    assert.deepEqual(error.details, { file, field: "apis[0].keyFormat.length" });
    const missing = write("missing-var.yaml", "apis:\n  - id: mail\n    upstream: ${NOPE_URL}\n");
    assertConfigError(() => loadConfigFile(missing, {}), missing, "apis[0].upstream", "NOPE_URL");
  });

  test("a file that does not exist is a ConfigError with its path and the reason", () => {
    const file = join(dir, "does-not-exist.yaml");
    assertConfigError(() => loadConfigFile(file, {}), file, "cannot read config", "ENOENT");
  });

  test("a path that cannot be read as a file is a ConfigError", () => {
    assertConfigError(() => loadConfigFile(dir, {}), dir, "cannot read config", "EISDIR");
  });

  test("a file without read permission is a ConfigError", { skip: process.getuid?.() === 0 ? "running as root, which reads any file" : false }, () => {
    const file = write("secret.yaml", "apis: [{ id: a }]\n");
    chmodSync(file, 0o000);
    assertConfigError(() => loadConfigFile(file, {}), file, "EACCES");
  });

  test("invalid YAML is a ConfigError with the line number", () => {
    const file = write("broken.yaml", "server:\n  port: 8080\napis:\n  - id: mail\n    name: [unclosed\n  - id: other\n");
    const error = assertConfigError(() => loadConfigFile(file, {}), file, "not valid YAML", /at line \d+, column \d+/);
    const line = Number(/at line (\d+)/.exec(error.message)![1]);
    assert.ok(line >= 5 && line <= 7, `line ${line} in ${error.message}`);
  });

  test("a tab-indented YAML file reports the line of the tab", () => {
    const file = write("tabs.yaml", "apis:\n  - id: mail\n\tname: x\n");
    assertConfigError(() => loadConfigFile(file, {}), file, "at line 3");
  });

  test("an empty file is rejected as having no apis", () => {
    const file = write("empty.yaml", "");
    assertConfigError(() => loadConfigFile(file, {}), file, "(root)");
  });
});
