/**
 * Secret patterns: the regex derived from each key format finds that format's keys in free
 * text and nothing around them; the checksum discards look-alikes; the admin route serves it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { createKeyCodec } from "../../src/keys/format.js";
import type { KeyFormat } from "../../src/keys/format.js";
import { parseConfig, loadConfigFile } from "../../src/config/load.js";
import { secretPattern } from "../../src/scanning/pattern.js";
import { createSecretScanner } from "../../src/scanning/scanner.js";
import { buildServer } from "../../src/http/server.js";
import { createTestKeygate } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

/** A format with every field, defaults as the config gives them. */
const format = (f: Partial<KeyFormat>): KeyFormat =>
  parseConfig({ apis: [{ id: "x", keyFormat: f }] }).apis[0]!.keyFormat;

/** The formats the patterns are checked against: every alphabet, separator and head shape. */
const FORMATS: Record<string, KeyFormat> = {
  "prefix, environments, base62, checksum": format({ prefix: "sk", environments: ["live", "test"], length: 32, checksum: true }),
  "prefix only, dot separator, hex, checksum": format({ prefix: "kg", separator: ".", environments: ["live"], environmentInKey: false, length: 40, alphabet: "hex", checksum: true }),
  "dash separator, environments, no checksum": format({ prefix: "ce", separator: "-", environments: ["live", "sandbox"], length: 32 }),
  "no separator, no environment tag, checksum": format({ prefix: "SK", separator: "", environments: ["live"], environmentInKey: false, length: 40, checksum: true }),
  "uuid with an environment tag": format({ prefix: "", environments: ["prod"], alphabet: "uuid" }),
  "no head at all, base62, checksum": format({ prefix: "", environments: ["live"], environmentInKey: false, length: 40, checksum: true }),
};

/** A key whose checksum no longer matches: the last character changed to another of the alphabet. */
const corrupt = (key: string, f: KeyFormat): string => {
  const last = key.at(-1)!;
  const swap = f.alphabet === "base62" ? (last === "A" ? "B" : "A") : (last === "a" ? "b" : "a");
  return key.slice(0, -1) + swap;
};

for (const [name, f] of Object.entries(FORMATS)) {
  describe(`secret pattern: ${name}`, () => {
    const codec = createKeyCodec(f);
    const pattern = secretPattern("x", f);
    const scanner = createSecretScanner([{ id: "x", keyFormat: f }]);
    const keys = f.environments.map((env) => codec.generate(env));

    test("finds each key in source code, at its offset, with its environment", () => {
      for (const [i, key] of keys.entries()) {
        const text = `const client = new Client({ apiKey: "${key}" });\nexport KEY=${key}\n${key}`;
        const found = scanner.scan(text);
        assert.deepEqual(found.map((m) => m.key), [key, key, key]);
        assert.equal(found[0]!.index, text.indexOf(key));
        assert.equal(found[2]!.index, text.length - key.length);
        assert.equal(found[0]!.environment, f.environmentInKey ? f.environments[i] : null);
        assert.ok(new RegExp(`^${pattern.regex}$`).test(key));
        assert.ok(new RegExp(`^${pattern.regex}$`, "u").test(key), "valid under the u flag too");
      }
    });

    test("does not match a key glued to more letters or digits", () => {
      const key = keys[0]!;
      for (const text of [`x${key}`, `${key}0`, `9${key}Z`]) assert.deepEqual(scanner.scan(text), [], text);
    });

    test("the portable (RE2) form and GitHub's before/format/after fields find the same key", () => {
      const key = keys[0]!;
      const text = `token: '${key}',`;
      assert.equal(new RegExp(pattern.portableRegex).exec(text)?.[1], key);
      // GitHub's fields combine as before(format)after, with \A and \z as input anchors.
      const toJs = (s: string) => s.replace("\\A", "^").replace("\\z", "$");
      const github = new RegExp(`(?:${toJs(pattern.github.before)})(${pattern.github.secretFormat})(?:${toJs(pattern.github.after)})`);
      assert.equal(github.exec(text)?.[1], key);
      assert.doesNotMatch(pattern.portableRegex + pattern.github.secretFormat, /\(\?<?[=!]/, "no lookarounds where RE2 and Hyperscan have none");
    });

    if (pattern.checksum) {
      test("a match with a wrong checksum is discarded as a false positive", () => {
        const bad = corrupt(keys[0]!, f);
        assert.ok(new RegExp(pattern.regex).test(bad), "the shape alone still matches");
        assert.deepEqual(scanner.scan(`key = "${bad}"`), []);
        assert.equal(scanner.isKey("x", bad), false);
        assert.equal(scanner.isKey("x", keys[0]!), true);
      });
    }

    test("precision is reported honestly", () => {
      const hasHead = codec.head(f.environments[0]!) !== "";
      assert.equal(pattern.highPrecision, hasHead && pattern.checksum);
      assert.equal(pattern.caveat === null, pattern.highPrecision);
      assert.equal(pattern.checksumAlgorithm, pattern.checksum ? `crc32-${f.alphabet}-${f.alphabet === "hex" ? 8 : 6}` : null);
    });
  });
}

describe("secret patterns of keygate.yaml", () => {
  test("the documented regex of each shipped API is what secretPattern derives", () => {
    const config = loadConfigFile("keygate.yaml", { ...process.env, KEYGATE_HASH_SECRET: "" });
    const demo = config.apis.find((a) => a.id === "demo")!;
    const p = secretPattern(demo.id, demo.keyFormat);
    assert.equal(p.regex, "(?<![0-9A-Za-z])(?:sk_live_|sk_test_)[0-9A-Za-z]{32}(?![0-9A-Za-z])");
    assert.equal(p.github.secretFormat, "(?:sk_live_|sk_test_)[0-9A-Za-z]{32}");
    assert.equal(p.highPrecision, true);
    const airtime = config.apis.find((a) => a.id === "airtime")!;
    assert.equal(secretPattern(airtime.id, airtime.keyFormat).highPrecision, false, "airtime keys carry no checksum");
  });

  test("keys of two APIs in one text are each attributed to their API", () => {
    const apis = [
      { id: "demo", keyFormat: FORMATS["prefix, environments, base62, checksum"]! },
      { id: "files", keyFormat: FORMATS["prefix only, dot separator, hex, checksum"]! },
    ];
    const scanner = createSecretScanner(apis);
    const a = createKeyCodec(apis[0]!.keyFormat).generate("test");
    const b = createKeyCodec(apis[1]!.keyFormat).generate("live");
    assert.deepEqual(scanner.scan(`A=${a}\nB=${b}\nC=kgX${b.slice(3)}`).map((m) => [m.api, m.key]), [["demo", a], ["files", b]]);
  });
});

describe("GET /v1/apis/:id/secret-pattern", () => {
  const ROOT = "pattern-test-root-key-0123456789abcdefghij";
  let t: TestKeygate;
  let app: FastifyInstance;
  before(async () => {
    t = await createTestKeygate({ apis: [{ id: "demo", keyFormat: { prefix: "sk", checksum: true } }] });
    app = await buildServer({ keygate: t.keygate, rootKeyHash: createHash("sha256").update(ROOT).digest("hex") });
  });
  after(async () => {
    await app?.close();
    await t?.keygate.close();
  });
  const get = (url: string, auth = true) => app.inject({ method: "GET", url, headers: auth ? { authorization: `Bearer ${ROOT}` } : {} });

  test("answers the API's pattern", async () => {
    const res = await get("/v1/apis/demo/secret-pattern");
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), secretPattern("demo", t.keygate.apis.get("demo")!.config.keyFormat));
    assert.equal(res.json().github.secretType, "demo_api_key");
  });

  test("needs the root key; an unknown API is a 404 API_NOT_FOUND", async () => {
    assert.equal((await get("/v1/apis/demo/secret-pattern", false)).statusCode, 401);
    const missing = await get("/v1/apis/nope/secret-pattern");
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().code, "API_NOT_FOUND");
  });

  test("the GitHub alert endpoint is off unless configured", async () => {
    const res = await app.inject({ method: "POST", url: "/secret-scanning/github", payload: "[]", headers: { "content-type": "application/json" } });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().code, "ROUTE_NOT_FOUND");
  });
});
