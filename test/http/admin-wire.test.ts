/**
 * The admin API over a real socket, for what only real HTTP exercises: malformed JSON bytes,
 * prototype-poisoning keys, wrong media types, oversized bodies — each a 4xx problem document
 * with a stable code, never a 500 — and the server answering normally afterwards.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createTestKeygate } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "admin-wire-test-root-key-0123456789abcdef";
const BODY_LIMIT = 4096;

let t: TestKeygate;
let app: FastifyInstance;
let base: string;

const send = async (path: string, body: string | Uint8Array, contentType: string | null = "application/json", extra: Record<string, string> = {}) => {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${ROOT}`, ...(contentType ? { "content-type": contentType } : {}), ...extra },
    body,
    signal: AbortSignal.timeout(5000),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: JSON.parse(text) as Record<string, any> };
};

before(async () => {
  t = await createTestKeygate({ apis: [{ id: "pay", keyFormat: { prefix: "pk" } }] });
  app = await buildServer({ keygate: t.keygate, rootKeyHash: sha256Hex(ROOT), bodyLimitBytes: BODY_LIMIT });
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});
after(async () => {
  await app?.close();
  await t?.keygate.close();
});

describe("malformed bodies over real HTTP", () => {
  const malformed: Array<[string, string | Uint8Array]> = [
    ["truncated JSON", '{"api":"pay","accountId":'],
    ["a trailing comma", '{"api":"pay",}'],
    ["single quotes", "{'api':'pay'}"],
    ["trailing bytes after the object", '{"api":"pay"} {"api":"pay"}'],
    ["a bare word", "undefined"],
    ["raw control bytes", new Uint8Array([0x7b, 0x00, 0x01, 0x02, 0x7d])],
    ["a __proto__ key (prototype poisoning)", '{"api":"pay","accountId":"x","__proto__":{"admin":true}}'],
    ["a constructor.prototype key", '{"api":"pay","accountId":"x","constructor":{"prototype":{"admin":true}}}'],
  ];
  for (const [what, bytes] of malformed) {
    test(`${what}: 400 MALFORMED_JSON`, async () => {
      const res = await send("/v1/keys", bytes);
      assert.equal(res.status, 400, res.text);
      assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
      assert.equal(res.body.code, "MALFORMED_JSON");
      assert.match(res.body.detail, /^The request body is not valid JSON: /);
      assert.equal(res.body.requestId, res.headers.get("x-request-id"));
    });
  }

  test("an empty body declared as JSON: 400 MALFORMED_JSON", async () => {
    const res = await send("/v1/accounts", "");
    assert.equal(res.status, 400);
    assert.equal(res.body.code, "MALFORMED_JSON");
    assert.match(res.body.detail, /empty/);
  });

  test("valid JSON that is not an object: 400 INVALID_REQUEST", async () => {
    for (const json of ["null", "[]", '"a string"', "42", "true"]) {
      const res = await send("/v1/keys", json);
      assert.equal(res.status, 400, json);
      assert.equal(res.body.code, "INVALID_REQUEST", json);
      assert.match(res.body.detail, /^body: must be object$/, json);
    }
  });

  test("a form body: 415 UNSUPPORTED_MEDIA_TYPE, saying to send JSON", async () => {
    const res = await send("/v1/accounts", "name=A&email=a%40b.test", "application/x-www-form-urlencoded");
    assert.equal(res.status, 415);
    assert.equal(res.body.code, "UNSUPPORTED_MEDIA_TYPE");
    assert.equal(res.body.detail, "Send the body as application/json.");
  });

  test("a body over server.bodyLimitBytes: 413 BODY_TOO_LARGE naming the limit", async () => {
    const res = await send("/v1/accounts", JSON.stringify({ name: "x".repeat(BODY_LIMIT), email: "big@wire.test" }));
    assert.equal(res.status, 413);
    assert.equal(res.body.code, "BODY_TOO_LARGE");
    assert.equal(res.body.detail, `The request body exceeds ${BODY_LIMIT} bytes.`);
  });

  test("a UTF-8 byte-order mark before the JSON is tolerated (as some Windows clients send it)", async () => {
    const res = await send("/v1/accounts", new Uint8Array([0xef, 0xbb, 0xbf, ...Buffer.from(JSON.stringify({ name: "Bom", email: "bom@wire.test" }))]));
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.name, "Bom");
  });

  test("JSON with a charset parameter is JSON", async () => {
    const res = await send("/v1/accounts", JSON.stringify({ name: "Charset", email: "charset@wire.test" }), "application/json; charset=utf-8");
    assert.equal(res.status, 201, res.text);
  });

  test("a URL that cannot be decoded (/v1/keys/%ZZ): 400 BAD_REQUEST as a problem document", async () => {
    const res = await fetch(`${base}/v1/keys/%ZZ`, { headers: { authorization: `Bearer ${ROOT}` }, signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 400);
    assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.match(res.headers.get("x-request-id") ?? "", /^req_/);
    const body = (await res.json()) as Record<string, unknown>;
    assert.equal(body.code, "BAD_REQUEST");
    assert.equal(body.status, 400);
  });

  test("a client's X-Request-Id is echoed when well-formed, replaced when not", async () => {
    const ok = await send("/v1/keys", "{", "application/json", { "x-request-id": "trace-123.abc" });
    assert.equal(ok.headers.get("x-request-id"), "trace-123.abc");
    assert.equal(ok.body.requestId, "trace-123.abc");
    const bad = await send("/v1/keys", "{", "application/json", { "x-request-id": "<script>" });
    assert.match(bad.headers.get("x-request-id") ?? "", /^req_[\w-]+$/);
  });

  test("after all of that the server still answers, and wrote no key", async () => {
    const res = await fetch(`${base}/v1/keys`, { headers: { authorization: `Bearer ${ROOT}` } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { data: [], nextCursor: null });
    const unauth = await fetch(`${base}/v1/keys`);
    assert.equal(unauth.status, 401);
    assert.equal(unauth.headers.get("www-authenticate"), 'Bearer realm="keygate"');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
  });
});
