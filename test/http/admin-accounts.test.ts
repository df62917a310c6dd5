/**
 * GET /v1/apis and the account routes over HTTP (fastify inject): full response shapes,
 * per-environment IP allowlists (merged on PATCH, enforced by verify), pagination, and bad
 * input answered 4xx with a stable code and a detail that says what to fix.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "admin-accounts-test-root-key-0123456789ab";
const ACCOUNT_FIELDS = ["id", "name", "email", "metadata", "ipAllowlists", "createdAt", "updatedAt"].sort();

interface Res { status: number; body: any; headers: LightMyRequestResponse["headers"]; raw: string }

let t: TestKeygate;
let app: FastifyInstance;

const call = async (method: "GET" | "POST" | "PATCH", url: string, payload?: unknown): Promise<Res> => {
  const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.json(), headers: res.headers, raw: res.body };
};

function assertProblem(res: Res, status: number, code: string, detail: RegExp): void {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}: ${res.raw}`);
  assert.equal(res.body.code, code, res.raw);
  assert.match(String(res.headers["content-type"]), /^application\/problem\+json/);
  assert.match(res.body.detail, detail);
  assert.equal(res.body.requestId, res.headers["x-request-id"]);
}

before(async () => {
  t = await createTestKeygate({
    apis: [
      {
        id: "pay", name: "Payments",
        keyFormat: { prefix: "pk", environments: ["production", "sandbox"], length: 40, alphabet: "hex", checksum: false },
        scopes: [{ name: "charges.read", description: "Read charges" }, "charges.write"],
        defaultScopes: ["charges.read"],
        rateLimit: { limit: 1000, windowSeconds: 3600 },
        environmentRateLimits: { sandbox: { limit: 50, windowSeconds: 60 } },
        lockout: { maxAttempts: 4, windowSeconds: 300, blockSeconds: 600 },
      },
      { id: "mail", keyFormat: { prefix: "mk", checksum: true }, lockout: { enabled: false } },
    ],
  });
  app = await buildServer({ keygate: t.keygate, rootKeyHash: sha256Hex(ROOT) });
});
after(async () => {
  await app?.close();
  await t?.keygate.close();
});

describe("GET /v1/apis", () => {
  test("every configured API with its key format, examples, scopes and policies", async () => {
    const res = await call("GET", "/v1/apis");
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.body), ["data"]);
    const [pay, mail] = res.body.data;
    assert.deepEqual(pay, {
      id: "pay", name: "Payments",
      keyFormat: {
        prefix: "pk", separator: "_", environments: ["production", "sandbox"], environmentInKey: true, length: 40, alphabet: "hex", checksum: false,
        examples: { production: "pk_production_", sandbox: "pk_sandbox_" },
      },
      scopes: [{ name: "charges.read", description: "Read charges" }, { name: "charges.write" }],
      defaultScopes: ["charges.read"],
      rateLimit: { limit: 1000, windowSeconds: 3600 },
      environmentRateLimits: { sandbox: { limit: 50, windowSeconds: 60 } },
      lockout: { enabled: true, maxAttempts: 4, windowSeconds: 300, blockSeconds: 600 },
    });
    assert.equal(mail.id, "mail");
    assert.deepEqual(mail.scopes, []);
    assert.equal(mail.rateLimit, null);
    assert.equal(mail.lockout.enabled, false);
    assert.equal(mail.keyFormat.checksum, true);
  });

  test("a query string it does not take is ignored, never a 500", async () => {
    assert.equal((await call("GET", "/v1/apis?x=1")).status, 200);
  });
});

describe("POST /v1/accounts", () => {
  test("201 with the whole account", async () => {
    const res = await call("POST", "/v1/accounts", { name: "Initech", email: "ops@initech.test", metadata: { tier: "gold" }, ipAllowlists: { production: ["192.0.2.10"] } });
    assert.equal(res.status, 201, res.raw);
    assert.deepEqual(Object.keys(res.body).sort(), ACCOUNT_FIELDS);
    assert.match(res.body.id, /^acc_[0-9A-Za-z]{22}$/);
    assert.deepEqual({ ...res.body, id: null }, {
      id: null, name: "Initech", email: "ops@initech.test", metadata: { tier: "gold" }, ipAllowlists: { production: ["192.0.2.10/32"] },
      createdAt: new Date(T0).toISOString(), updatedAt: new Date(T0).toISOString(),
    });
    assert.deepEqual((await call("GET", `/v1/accounts/${res.body.id}`)).body, res.body);
  });

  const bad: Array<[string, unknown, number, string, RegExp]> = [
    ["no email", { name: "A" }, 400, "INVALID_REQUEST", /^body\.email: must have required property 'email'/],
    ["an email that is not one", { name: "A", email: "not-an-email" }, 400, "INVALID_REQUEST", /^body\.email: must match format "email"/],
    ["an empty name", { name: "", email: "a@a.test" }, 400, "INVALID_REQUEST", /^body\.name: must NOT have fewer than 1 characters/],
    ["a numeric name", { name: 7, email: "a@a.test" }, 400, "INVALID_REQUEST", /^body\.name: must be string/],
    ["an unknown field", { name: "A", email: "a@a.test", plan: "pro" }, 400, "INVALID_REQUEST", /^body\.plan: unknown field$/],
    ["an allowlist for an unknown environment", { name: "A", email: "a@a.test", ipAllowlists: { staging: ["192.0.2.1"] } }, 400, "UNKNOWN_ENVIRONMENT", /^ipAllowlists\.staging: no API has an environment "staging"; known: production, sandbox, live, test\.$/],
    ["a bad CIDR in an allowlist", { name: "A", email: "a@a.test", ipAllowlists: { sandbox: ["192.0.2.0/24", "192.0.2.0/99"] } }, 400, "INVALID_IP_ALLOWLIST", /^ipAllowlists\.sandbox\[1\]: "192\.0\.2\.0\/99" is not an IP address or CIDR range/],
    ["an allowlist that is not a list", { name: "A", email: "a@a.test", ipAllowlists: { sandbox: "192.0.2.1" } }, 400, "INVALID_REQUEST", /^body\.ipAllowlists\.sandbox: must be array/],
    ["a JSON array body", [{ name: "A", email: "a@a.test" }], 400, "INVALID_REQUEST", /^body: must be object/],
  ];
  for (const [what, body, status, code, detail] of bad) {
    test(`${what}: ${status} ${code}, nothing created`, async () => {
      const before = (await call("GET", "/v1/accounts?limit=100")).body.data.length;
      assertProblem(await call("POST", "/v1/accounts", body), status, code, detail);
      assert.equal((await call("GET", "/v1/accounts?limit=100")).body.data.length, before);
    });
  }

  test("an email taken by another account, in any case: 409 EMAIL_TAKEN", async () => {
    await call("POST", "/v1/accounts", { name: "First", email: "Taken@Example.test" });
    assertProblem(await call("POST", "/v1/accounts", { name: "Second", email: "taken@example.TEST" }), 409, "EMAIL_TAKEN", /^An account with email taken@example\.TEST exists already\.$/);
  });
});

describe("GET /v1/accounts and /v1/accounts/:id", () => {
  test("pages walk every account once, oldest first", async () => {
    for (let i = 0; i < 7; i++) {
      t.clock.advance(1);
      await call("POST", "/v1/accounts", { name: `Page ${i}`, email: `page${i}@pages.test` });
    }
    const all = (await call("GET", "/v1/accounts?limit=100")).body.data.map((a: { id: string }) => a.id);
    const seen: string[] = [];
    for (let cursor: string | null = null; ;) {
      const res = await call("GET", `/v1/accounts?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
      assert.equal(res.status, 200, res.raw);
      for (const a of res.body.data) assert.deepEqual(Object.keys(a).sort(), ACCOUNT_FIELDS);
      seen.push(...res.body.data.map((a: { id: string }) => a.id));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    assert.deepEqual(seen, all);
    assert.equal(new Set(seen).size, seen.length);
    assert.deepEqual([...all].sort(), all, "ordered by id, which is creation order");
  });

  test("bad paging input: 400", async () => {
    assertProblem(await call("GET", "/v1/accounts?limit=0"), 400, "INVALID_REQUEST", /^querystring\.limit: /);
    assertProblem(await call("GET", "/v1/accounts?limit=101"), 400, "INVALID_REQUEST", /^querystring\.limit: /);
    assertProblem(await call("GET", "/v1/accounts?cursor=key_0VbsvBC9Xav9yA0crtGsOv"), 400, "INVALID_REQUEST", /^querystring\.cursor: must match pattern "\^acc_/);
    assertProblem(await call("GET", "/v1/accounts?email=a@b.test"), 400, "INVALID_REQUEST", /^querystring\.email: unknown field$/);
  });

  test("an unknown id is 404 ACCOUNT_NOT_FOUND", async () => {
    assertProblem(await call("GET", "/v1/accounts/acc_0000000000000000000000"), 404, "ACCOUNT_NOT_FOUND", /^No account with id "acc_0000000000000000000000"\.$/);
    assertProblem(await call("PATCH", "/v1/accounts/acc_0000000000000000000000", { name: "x" }), 404, "ACCOUNT_NOT_FOUND", /No account with id/);
    assertProblem(await call("PATCH", "/v1/accounts/acc_0000000000000000000000", { ipAllowlists: { sandbox: [] } }), 404, "ACCOUNT_NOT_FOUND", /No account with id/);
  });
});

describe("PATCH /v1/accounts/:id", () => {
  test("name and metadata change; ipAllowlists merge per environment and an empty list clears one", async () => {
    const a = (await call("POST", "/v1/accounts", { name: "Hooli", email: "it@hooli.test", ipAllowlists: { production: ["192.0.2.0/24"], sandbox: ["198.51.100.7"] } })).body;
    t.clock.advance(1_000);
    const renamed = await call("PATCH", `/v1/accounts/${a.id}`, { name: "Hooli XYZ", metadata: { v: 2 } });
    assert.equal(renamed.status, 200);
    assert.deepEqual(Object.keys(renamed.body).sort(), ACCOUNT_FIELDS);
    assert.equal(renamed.body.name, "Hooli XYZ");
    assert.deepEqual(renamed.body.metadata, { v: 2 });
    assert.deepEqual(renamed.body.ipAllowlists, a.ipAllowlists, "allowlists untouched when not named");
    assert.equal(renamed.body.updatedAt, new Date(t.clock.now()).toISOString());
    assert.equal(renamed.body.email, "it@hooli.test");

    const merged = await call("PATCH", `/v1/accounts/${a.id}`, { ipAllowlists: { sandbox: ["203.0.113.0/24"] } });
    assert.deepEqual(merged.body.ipAllowlists, { production: ["192.0.2.0/24"], sandbox: ["203.0.113.0/24"] });
    const cleared = await call("PATCH", `/v1/accounts/${a.id}`, { ipAllowlists: { production: [] } });
    assert.deepEqual(cleared.body.ipAllowlists, { sandbox: ["203.0.113.0/24"] });
    assert.deepEqual((await call("GET", `/v1/accounts/${a.id}`)).body, cleared.body);
  });

  test("the account's allowlist for an environment is enforced on its keys of that environment, at once", async () => {
    const a = (await call("POST", "/v1/accounts", { name: "Umbrella", email: "sec@umbrella.test" })).body;
    const prod = (await call("POST", "/v1/keys", { api: "pay", accountId: a.id, environment: "production" })).body;
    const sandbox = (await call("POST", "/v1/keys", { api: "pay", accountId: a.id, environment: "sandbox" })).body;
    const verdict = async (key: string, ip: string) => (await call("POST", "/v1/keys/verify", { api: "pay", key, ip })).body.code;
    assert.equal(await verdict(prod.key, "192.0.2.50"), "VALID");
    await call("PATCH", `/v1/accounts/${a.id}`, { ipAllowlists: { production: ["203.0.113.0/24"] } });
    assert.equal(await verdict(prod.key, "192.0.2.50"), "IP_NOT_ALLOWED");
    assert.equal(await verdict(prod.key, "203.0.113.9"), "VALID");
    assert.equal(await verdict(sandbox.key, "192.0.2.50"), "VALID", "another environment is not restricted");
    await call("PATCH", `/v1/accounts/${a.id}`, { ipAllowlists: { production: [] } });
    assert.equal(await verdict(prod.key, "192.0.2.50"), "VALID");
  });

  test("bad input: 400 with the field, and the account is unchanged", async () => {
    const a = (await call("POST", "/v1/accounts", { name: "Stark", email: "tony@stark.test" })).body;
    const cases: Array<[unknown, string, RegExp]> = [
      [{}, "INVALID_REQUEST", /^body: must NOT have fewer than 1 properties/],
      [{ email: "new@stark.test" }, "INVALID_REQUEST", /^body\.email: unknown field$/],
      [{ ipAllowlists: { qa: ["192.0.2.1"] } }, "UNKNOWN_ENVIRONMENT", /^ipAllowlists\.qa: no API has an environment "qa"/],
      [{ ipAllowlists: { production: ["1.2.3.4/33"] } }, "INVALID_IP_ALLOWLIST", /^ipAllowlists\.production\[0\]: "1\.2\.3\.4\/33" is not an IP address or CIDR range/],
      [{ metadata: "x" }, "INVALID_REQUEST", /^body\.metadata: must be object/],
    ];
    for (const [body, code, detail] of cases) assertProblem(await call("PATCH", `/v1/accounts/${a.id}`, body), 400, code, detail);
    assert.deepEqual((await call("GET", `/v1/accounts/${a.id}`)).body, a);
  });
});
