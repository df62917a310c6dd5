/**
 * /openapi.json against the routes it describes: an OpenAPI 3.1 document listing every admin
 * route, whose request schemas (validated here with ajv's JSON Schema 2020-12, the dialect of
 * OpenAPI 3.1) accept exactly the bodies and parameters the routes accept and reject those
 * they reject as INVALID_REQUEST, and whose response schemas the actual responses match.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { ValidateFunction } from "ajv";
import formats from "ajv-formats";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createTestKeygate } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "admin-openapi-test-root-key-0123456789abc";

/** The admin routes of issue 2, as OpenAPI paths. */
const ADMIN_ROUTES = [
  "get /v1/apis",
  "post /v1/accounts", "get /v1/accounts", "get /v1/accounts/{id}", "patch /v1/accounts/{id}",
  "post /v1/keys", "get /v1/keys", "get /v1/keys/{id}", "patch /v1/keys/{id}",
  "post /v1/keys/{id}/revoke", "post /v1/keys/{id}/rotate", "post /v1/keys/import", "post /v1/keys/verify",
];

interface Operation {
  summary?: string;
  parameters?: Array<{ in: string; name: string; required?: boolean; schema: object }>;
  requestBody?: { required?: boolean; content: Record<string, { schema: object }> };
  responses: Record<string, { content?: Record<string, { schema: object }> }>;
}
interface Document { openapi: string; info: { title: string }; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> }; security: unknown[] }

let t: TestKeygate;
let app: FastifyInstance;
let doc: Document;
const ajv = new Ajv2020({ strict: true, allErrors: true });
formats.default(ajv);
ajv.addKeyword("example"); // an OpenAPI annotation ajv does not know
const compiled = new Map<object, ValidateFunction>();
const validator = (schema: object): ValidateFunction => {
  let v = compiled.get(schema);
  if (!v) compiled.set(schema, (v = ajv.compile(schema)));
  return v;
};

const op = (route: string): Operation => {
  const [method, path] = route.split(" ") as [string, string];
  const o = doc.paths[path]?.[method];
  assert.ok(o, `${route} is documented`);
  return o;
};
const bodyValidator = (route: string) => validator(op(route).requestBody!.content["application/json"]!.schema);

const inject = async (method: string, url: string, payload?: unknown) => {
  const res = await app.inject({ method: method.toUpperCase() as "GET", url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.json() as any, raw: res.body };
};

/** The route's own verdict on a request: rejected for its shape, or not. And the response must match the documented one. */
async function routeAccepts(route: string, url: string, payload?: unknown): Promise<boolean> {
  const [method] = route.split(" ") as [string];
  const res = await inject(method, url, payload);
  assert.ok(res.status < 500, `${route}: never a 500 (${res.raw})`);
  const documented = op(route).responses[String(res.status)];
  assert.ok(documented, `${route}: status ${res.status} is documented`);
  const schema = documented.content?.["application/json"]?.schema;
  if (schema) {
    const v = validator(schema);
    assert.ok(v(res.body), `${route} ${res.status}: the response matches its documented schema: ${ajv.errorsText(v.errors)}`);
  }
  return !(res.status === 400 && res.body.code === "INVALID_REQUEST");
}

before(async () => {
  t = await createTestKeygate({ apis: [{ id: "pay", keyFormat: { prefix: "pk", checksum: true }, scopes: ["read", "write"] }] });
  app = await buildServer({ keygate: t.keygate, rootKeyHash: sha256Hex(ROOT) });
  const res = await app.inject({ method: "GET", url: "/openapi.json" });
  assert.equal(res.statusCode, 200);
  doc = res.json();
});
after(async () => {
  await app?.close();
  await t?.keygate.close();
});

describe("GET /openapi.json", () => {
  test("is OpenAPI 3.1 with the root key as a bearer security scheme", () => {
    assert.equal(doc.openapi, "3.1.0");
    assert.equal(doc.info.title, "keygate");
    assert.deepEqual(doc.components.securitySchemes.rootKey, { type: "http", scheme: "bearer", description: "The root key printed on first start or set with KEYGATE_ROOT_KEY." });
    assert.deepEqual(doc.security, [{ rootKey: [] }]);
  });

  test("lists every admin route, each with a summary, its success response and its problems (401 always, 400 with input, 404 with an id)", () => {
    for (const route of ADMIN_ROUTES) {
      const o = op(route);
      assert.ok(o.summary, `${route} has a summary`);
      const codes = Object.keys(o.responses);
      assert.ok(codes.some((c) => c === "200" || c === "201"), `${route} documents its success`);
      const input = o.requestBody !== undefined || (o.parameters?.length ?? 0) > 0;
      for (const c of ["401", ...(input ? ["400"] : []), ...(route.includes("{id}") ? ["404"] : [])]) {
        const problem = o.responses[c]?.content?.["application/json"]?.schema as { required?: string[] } | undefined;
        assert.ok(problem?.required?.includes("code"), `${route} documents ${c} as a problem with a code`);
      }
    }
  });

  test("every documented /v1 operation is a route the server has", () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith("/v1/")) continue;
      for (const method of Object.keys(ops)) {
        const url = path.replace(/\{(\w+)\}/g, ":$1");
        assert.ok(app.hasRoute({ method: method.toUpperCase() as "GET", url }), `${method} ${path} is served`);
      }
    }
  });

  test("create and rotate document the secret; get, list, update, revoke, import and verify do not", () => {
    const props = (schema: unknown): string[] => Object.keys((schema as { properties?: object }).properties ?? {});
    const json = (route: string, status: string) => op(route).responses[status]!.content!["application/json"]!.schema as any;
    assert.ok(props(json("post /v1/keys", "201")).includes("key"));
    assert.ok(props(json("post /v1/keys/{id}/rotate", "201").properties.key).includes("key"));
    assert.ok(!props(json("post /v1/keys/{id}/rotate", "201").properties.previous).includes("key"));
    for (const [route, status] of [["get /v1/keys/{id}", "200"], ["patch /v1/keys/{id}", "200"], ["post /v1/keys/{id}/revoke", "200"], ["post /v1/keys/verify", "200"]] as const) {
      assert.ok(!props(json(route, status)).includes("key"), `${route} has no key field`);
    }
    assert.ok(!props(json("get /v1/keys", "200").properties.data.items).includes("key"));
    assert.ok(!props(json("post /v1/keys/import", "201").properties.keys.items).includes("key"));
  });
});

describe("the documented request schemas accept exactly what the routes accept", () => {
  let keyId: string;
  before(async () => {
    keyId = (await t.keygate.keys.create({ api: "pay", accountId: t.accountId })).id;
  });

  const agree = async (route: string, url: string, samples: unknown[]) => {
    const validate = bodyValidator(route);
    for (const sample of samples) {
      const byDoc = validate(sample);
      const byRoute = await routeAccepts(route, url, sample);
      assert.equal(byDoc, byRoute, `${route} ${JSON.stringify(sample)}: the document ${byDoc ? "accepts" : "rejects"} it, the route ${byRoute ? "accepts" : "rejects"} it (${ajv.errorsText(validate.errors)})`);
    }
  };

  test("POST /v1/keys", async () => {
    const acc = t.accountId;
    await agree("post /v1/keys", "/v1/keys", [
      { api: "pay", accountId: acc },
      { api: "pay", accountId: acc, name: "n", environment: "test", scopes: ["read"], ipAllowlist: ["10.0.0.0/8"], expiresAt: "2030-01-01T00:00:00Z", rateLimit: { limit: 5, windowSeconds: 5 }, metadata: { a: [1] } },
      { api: "pay", accountId: acc, expiresAt: null, rateLimit: null, name: null },
      { api: "pay" },
      { api: "pay", accountId: acc, extra: true },
      { api: "pay", accountId: acc, scopes: "read" },
      { api: "pay", accountId: acc, scopes: [1] },
      { api: "pay", accountId: acc, expiresAt: "tomorrow" },
      { api: "pay", accountId: acc, expiresAt: "2030-01-01" },
      { api: "pay", accountId: acc, rateLimit: { limit: 0, windowSeconds: 5 } },
      { api: "pay", accountId: acc, rateLimit: { limit: 5 } },
      { api: "pay", accountId: acc, name: "" },
      { api: 7, accountId: acc },
      { api: "pay", accountId: acc, metadata: [] },
      [],
      // Right shape, wrong content: both accept the shape; the route answers with another code.
      { api: "nope", accountId: acc },
      { api: "pay", accountId: acc, ipAllowlist: ["10.0.0.0/33"] },
      { api: "pay", accountId: acc, scopes: ["admin"] },
    ]);
  });

  test("PATCH /v1/keys/:id", async () => {
    await agree("patch /v1/keys/{id}", `/v1/keys/${keyId}`, [
      { name: "x" }, { enabled: false }, { enabled: true }, { scopes: ["read", "write"] }, { expiresAt: null },
      {}, { enabled: "no" }, { environment: "test" }, { api: "pay" }, { rateLimit: { limit: 1, windowSeconds: 0 } }, { metadata: "m" },
    ]);
  });

  test("POST /v1/keys/:id/rotate and /revoke", async () => {
    await agree("post /v1/keys/{id}/rotate", `/v1/keys/${keyId}/rotate`, [{ gracePeriodSeconds: -1 }, { gracePeriodSeconds: 2_592_001 }, { gracePeriodSeconds: "60" }, { gracePeriodSeconds: 1.5 }, { grace: 60 }, { gracePeriodSeconds: 60 }]);
    const other = (await t.keygate.keys.create({ api: "pay", accountId: t.accountId })).id;
    await agree("post /v1/keys/{id}/revoke", `/v1/keys/${other}/revoke`, [{ reason: "leak" }, {}]);
  });

  test("POST /v1/keys/import", async () => {
    const acc = t.accountId;
    await agree("post /v1/keys/import", "/v1/keys/import", [
      { api: "pay", keys: [] },
      { api: "pay", keys: [{ accountId: acc, hash: "xyz" }] },
      { api: "pay", keys: [{ accountId: acc, hash: "c".repeat(64), enabled: true }] },
      { api: "pay", keys: [{ hash: "c".repeat(64) }] },
      { api: "pay", keys: {} },
      { api: "pay", keys: [{ accountId: acc, hash: "c".repeat(64), scopes: ["read"] }] },
      { api: "pay", keys: [{ accountId: acc, hash: "d".repeat(64) }], dryRun: true },
    ]);
  });

  test("POST /v1/keys/verify", async () => {
    await agree("post /v1/keys/verify", "/v1/keys/verify", [
      { api: "pay", key: "pk_live_x" }, { api: "pay", key: "" }, { api: "pay", key: "pk_live_x", ip: "192.0.2.1", scopes: ["read"] },
      { api: "pay" }, { key: "x" }, { api: "pay", key: 1 }, { api: "pay", key: "x", scopes: "read" }, { api: "pay", key: "x", env: "live" },
    ]);
  });

  test("POST and PATCH /v1/accounts", async () => {
    await agree("post /v1/accounts", "/v1/accounts", [
      { name: "Doc", email: "doc@openapi.test" }, { name: "Doc" }, { name: "Doc", email: "nope" }, { name: "", email: "x@openapi.test" },
      { name: "Doc", email: "y@openapi.test", ipAllowlists: { live: "10.0.0.1" } }, { name: "Doc", email: "z@openapi.test", tier: 1 },
    ]);
    await agree("patch /v1/accounts/{id}", `/v1/accounts/${t.accountId}`, [{ name: "Renamed" }, {}, { email: "a@b.test" }, { ipAllowlists: { live: [] } }, { metadata: 1 }]);
  });

  test("query parameters of GET /v1/keys and GET /v1/accounts", async () => {
    for (const [route, base, samples] of [
      ["get /v1/keys", "/v1/keys", [{ limit: "1" }, { limit: "100" }, { limit: "0" }, { limit: "101" }, { limit: "1e2" }, { cursor: keyId }, { cursor: "garbage" }, { cursor: "acc_0VbsvBC9Xav9yA0crtGsOv" }, { api: "pay", accountId: t.accountId }]],
      ["get /v1/accounts", "/v1/accounts", [{ limit: "50" }, { limit: "0" }, { limit: "x" }, { cursor: t.accountId }, { cursor: keyId }]],
    ] as const) {
      const params = op(route).parameters!.filter((p) => p.in === "query");
      for (const sample of samples as ReadonlyArray<Record<string, string>>) {
        const byDoc = Object.entries(sample).every(([name, value]) => {
          const p = params.find((x) => x.name === name);
          return p !== undefined && validator(p.schema)(value);
        });
        const byRoute = await routeAccepts(route, `${base}?${new URLSearchParams(sample)}`);
        assert.equal(byDoc, byRoute, `${route} ?${new URLSearchParams(sample)}: document ${byDoc}, route ${byRoute}`);
      }
    }
  });
});
