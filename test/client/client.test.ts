/**
 * keygate/client against a real keygate service over HTTP: every call the SDK makes, each
 * answer checked against the response schema /openapi.json gives for it, list iteration
 * across cursor pages, and errors as KeygateApiError with the service's stable codes.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createKeygateClient, KeygateApiError } from "../../src/client/index.js";
import { createKeyCodec } from "../../src/keys/format.js";
import type { KeygateClient } from "../../src/client/index.js";
import { ROOT_KEY, responseChecker, startService } from "./support.js";
import type { Service } from "./support.js";

let service: Service;
let kg: KeygateClient;
let check: ReturnType<typeof responseChecker>;
/** Every URL the SDK fetched, to see how lists page. */
const fetched: string[] = [];

before(async () => {
  service = await startService();
  check = responseChecker(service.document);
  kg = createKeygateClient({
    baseUrl: `${service.url}/`,
    rootKey: ROOT_KEY,
    fetch: (input, init) => {
      fetched.push(String(input));
      return fetch(input, init);
    },
  });
});
after(async () => { await service?.close(); });

const uniqueEmail = (() => { let n = 0; return () => `dev${++n}@client.test`; })();

describe("apis", () => {
  test("list answers the configured APIs", async () => {
    const apis = await kg.apis.list();
    check("GET /v1/apis", 200, { data: apis });
    assert.deepEqual(apis.map((a) => a.id), ["pay"]);
    assert.equal(apis[0]!.keyFormat.prefix, "pk");
  });
});

describe("accounts", () => {
  test("create, get and update round-trip", async () => {
    const email = uniqueEmail();
    const created = check("POST /v1/accounts", 201, await kg.accounts.create({ name: "Acme", email, metadata: { plan: "pro" } }));
    assert.match(created.id, /^acc_/);
    assert.deepEqual(check("GET /v1/accounts/{id}", 200, await kg.accounts.get(created.id)), created);
    const updated = check("PATCH /v1/accounts/{id}", 200, await kg.accounts.update(created.id, { ipAllowlists: { live: ["203.0.113.0/24"] } }));
    assert.deepEqual(updated.ipAllowlists, { live: ["203.0.113.0/24"] });
    assert.equal(updated.email, email);
  });

  test("awaiting list gives one page; iterating it gives every account, fetching a page at a time", async () => {
    for (let i = 0; i < 5; i++) await kg.accounts.create({ name: `Bulk ${i}`, email: uniqueEmail() });
    const first = await kg.accounts.list({ limit: 2 });
    check("GET /v1/accounts", 200, first);
    assert.equal(first.data.length, 2);
    assert.ok(first.nextCursor);

    const everyone = (await service.keygate.store.listAccounts({ limit: 1000 })).map((a) => a.id);
    fetched.length = 0;
    const seen: string[] = [];
    for await (const account of kg.accounts.list({ limit: 2 })) seen.push(account.id);
    assert.deepEqual(seen, everyone);
    assert.equal(fetched.length, Math.ceil(everyone.length / 2));
    assert.ok(fetched.every((u) => u.includes("limit=2")));

    // Breaking out of the loop fetches no further page.
    fetched.length = 0;
    for await (const account of kg.accounts.list({ limit: 2 })) { assert.ok(account.id); break; }
    assert.equal(fetched.length, 1);
  });
});

describe("applications", () => {
  test("create, get, update and list; features grant scopes", async () => {
    const account = await kg.accounts.create({ name: "Shop", email: uniqueEmail() });
    const app = check("POST /v1/applications", 201, await kg.applications.create({ accountId: account.id, api: "pay", name: "shop", features: ["view"] }));
    assert.deepEqual(app.scopes, ["charges.read"]);
    assert.match(app.clientId, /^ID/);
    assert.deepEqual(check("GET /v1/applications/{id}", 200, await kg.applications.get(app.id)), app);
    const updated = check("PATCH /v1/applications/{id}", 200, await kg.applications.update(app.id, { features: ["collect"] }));
    assert.deepEqual(updated.scopes, ["charges.read", "charges.write"]);
    const page = check("GET /v1/applications", 200, await kg.applications.list({ accountId: account.id }));
    assert.deepEqual(page.data.map((a) => a.id), [app.id]);
    const listed = [];
    for await (const a of kg.applications.list({ accountId: account.id })) listed.push(a.id);
    assert.deepEqual(listed, [app.id]);
  });
});

describe("keys", () => {
  let accountId: string;
  before(async () => { accountId = (await kg.accounts.create({ name: "Keys", email: uniqueEmail() })).id; });

  test("create shows the secret once; get, update and list never do", async () => {
    const created = check("POST /v1/keys", 201, await kg.keys.create({ api: "pay", accountId, name: "server", scopes: ["charges.read"] }));
    assert.match(created.key, /^pk_live_/);
    const got = check("GET /v1/keys/{id}", 200, await kg.keys.get(created.id));
    assert.equal("key" in got, false);
    assert.equal(got.status, "active");
    const updated = check("PATCH /v1/keys/{id}", 200, await kg.keys.update(created.id, { scopes: ["charges.read", "charges.write"], metadata: { team: "a" } }));
    assert.deepEqual(updated.scopes, ["charges.read", "charges.write"]);
    assert.deepEqual(updated.metadata, { team: "a" });
  });

  test("list iterates every key of an account across pages, oldest first", async () => {
    const own = (await kg.accounts.create({ name: "Many keys", email: uniqueEmail() })).id;
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await kg.keys.create({ api: "pay", accountId: own })).id);
    const page = check("GET /v1/keys", 200, await kg.keys.list({ accountId: own, limit: 2 }));
    assert.deepEqual(page.data.map((k) => k.id), ids.slice(0, 2));
    const seen = [];
    for await (const key of kg.keys.list({ accountId: own, api: "pay", limit: 2 })) seen.push(key.id);
    assert.deepEqual(seen, ids);
    // Starting from a cursor continues after it.
    const rest = [];
    for await (const key of kg.keys.list({ accountId: own, cursor: ids[2]!, limit: 2 })) rest.push(key.id);
    assert.deepEqual(rest, ids.slice(3));
  });

  test("verify answers verdicts, a denied key included, never as an error", async () => {
    const { key, id } = await kg.keys.create({ api: "pay", accountId, scopes: ["charges.read"], rateLimit: { limit: 5, windowSeconds: 60 } });
    const ok = check("POST /v1/keys/verify", 200, await kg.keys.verify({ api: "pay", key, ip: "203.0.113.7", scopes: ["charges.read"] }));
    assert.equal(ok.valid, true);
    assert.equal(ok.code, "VALID");
    assert.equal(ok.keyId, id);
    assert.equal(ok.ratelimit?.remaining, 4);
    const denied = check("POST /v1/keys/verify", 200, await kg.keys.verify({ api: "pay", key, scopes: ["charges.write"] }));
    assert.equal(denied.valid, false);
    assert.equal(denied.code, "INSUFFICIENT_SCOPE");
    assert.deepEqual(denied.missingScopes, ["charges.write"]);
  });

  test("rotate issues a successor and keeps the old key through its grace period; revoke stops it, twice harmlessly", async () => {
    const old = await kg.keys.create({ api: "pay", accountId });
    const rotated = check("POST /v1/keys/{id}/rotate", 201, await kg.keys.rotate(old.id, { gracePeriodSeconds: 3600 }));
    assert.notEqual(rotated.key.key, old.key);
    assert.equal(rotated.previous.status, "rotating");
    assert.equal(rotated.previous.replacedBy, rotated.key.id);
    assert.equal((await kg.keys.verify({ api: "pay", key: old.key })).valid, true);
    assert.equal((await kg.keys.verify({ api: "pay", key: rotated.key.key })).valid, true);

    const revoked = check("POST /v1/keys/{id}/revoke", 200, await kg.keys.revoke(rotated.key.id));
    assert.equal(revoked.status, "revoked");
    assert.deepEqual(await kg.keys.revoke(rotated.key.id), revoked);
    assert.equal((await kg.keys.verify({ api: "pay", key: rotated.key.key })).code, "REVOKED");
  });

  test("import takes secrets and SHA-256 hashes, all or nothing; imported secrets verify", async () => {
    const existing = (await kg.keys.create({ api: "pay", accountId })).key;
    // A secret of the API's own format that keygate has never seen, as a legacy system would hold.
    const outside = createKeyCodec(service.keygate.apis.get("pay")!.config.keyFormat).generate("live");
    const legacyHash = createHash("sha256").update("legacy-secret-with-enough-entropy-0001").digest("hex");
    const result = check("POST /v1/keys/import", 201, await kg.keys.import({
      api: "pay",
      keys: [{ accountId, key: outside, name: "kept" }, { accountId, hash: legacyHash, name: "legacy" }],
    }));
    assert.equal(result.imported, 2);
    assert.deepEqual(result.keys.map((k) => [k.name, k.source]), [["kept", "imported"], ["legacy", "imported"]]);
    assert.equal((await kg.keys.verify({ api: "pay", key: outside })).keyId, result.keys[0]!.id);

    let caught: unknown;
    await kg.keys.import({ api: "pay", keys: [{ accountId, key: existing }] }).catch((e: unknown) => { caught = e; });
    assert.ok(caught instanceof KeygateApiError);
    assert.equal(caught.status, 409);
    assert.equal(caught.code, "DUPLICATE_KEY");
  });
});

describe("signing keys", () => {
  test("rotate adds an active key; list shows it without private material", async () => {
    const rotated = check("POST /v1/signing-keys/rotate", 201, await kg.signingKeys.rotate("EdDSA"));
    assert.equal(rotated.alg, "EdDSA");
    assert.equal(rotated.status, "active");
    const list = await kg.signingKeys.list();
    check("GET /v1/signing-keys", 200, { data: list });
    assert.ok(list.some((k) => k.kid === rotated.kid && k.status === "active"));
    assert.ok(list.every((k) => Object.keys(k).every((f) => ["kid", "alg", "status", "createdAt", "retiredAt", "publishedUntil"].includes(f))));
  });
});

describe("errors", () => {
  const rejectsWith = async (promise: Promise<unknown>, expected: { status: number; code: string }): Promise<KeygateApiError> => {
    let caught: unknown;
    await promise.catch((e: unknown) => { caught = e; });
    assert.ok(caught instanceof KeygateApiError, `expected a KeygateApiError, got ${String(caught)}`);
    assert.equal(caught.status, expected.status);
    assert.equal(caught.code, expected.code);
    assert.equal(caught.name, "KeygateApiError");
    assert.ok(caught.detail.length > 0);
    assert.match(caught.message, new RegExp(`^${expected.code}: `));
    return caught;
  };

  test("an unknown id is 404 KEY_NOT_FOUND, carrying the request id the call sent", async () => {
    const e = await rejectsWith(kg.keys.get("key_doesnotexist", { requestId: "req_client_404" }), { status: 404, code: "KEY_NOT_FOUND" });
    assert.equal(e.requestId, "req_client_404");
  });

  test("a body outside the schema is 400 INVALID_REQUEST listing each field", async () => {
    const e = await rejectsWith(kg.keys.create({ api: "pay", accountId: "acc_x", scopes: "charges.read" as unknown as string[] }), { status: 400, code: "INVALID_REQUEST" });
    assert.equal(e.errors[0]?.field, "body.scopes");
    assert.match(e.requestId ?? "", /^req_/);
  });

  test("a wrong root key is 401 UNAUTHORIZED", async () => {
    const wrong = createKeygateClient({ baseUrl: service.url, rootKey: "not-the-root-key-at-all-0123456789abc" });
    await rejectsWith(wrong.apis.list(), { status: 401, code: "UNAUTHORIZED" });
  });

  test("rotating a revoked key is 409 KEY_NOT_ROTATABLE; verifying for an unknown API is 400 UNKNOWN_API", async () => {
    const account = await kg.accounts.create({ name: "Err", email: uniqueEmail() });
    const k = await kg.keys.create({ api: "pay", accountId: account.id });
    await kg.keys.revoke(k.id);
    await rejectsWith(kg.keys.rotate(k.id), { status: 409, code: "KEY_NOT_ROTATABLE" });
    await rejectsWith(kg.keys.verify({ api: "nope", key: k.key }), { status: 400, code: "UNKNOWN_API" });
  });

  test("a client without an absolute base URL or a root key is refused when it is made", () => {
    assert.throws(() => createKeygateClient({ baseUrl: "127.0.0.1:8080", rootKey: ROOT_KEY }), /baseUrl must be an absolute URL/);
    assert.throws(() => createKeygateClient({ baseUrl: service.url, rootKey: "" }), /rootKey is required/);
  });

  test("an empty id is refused before any request is sent", async () => {
    fetched.length = 0;
    await assert.rejects(kg.keys.get(""), /needs a non-empty id/);
    assert.equal(fetched.length, 0);
  });
});
