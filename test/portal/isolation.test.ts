/**
 * No data from another customer, ever: on a real SQLite store, customer B tries every id of
 * customer A's — the account, applications, keys, request logs, and A's ids as filters of
 * usage, logs and the live feed — and gets 404 each time, as for an id that does not exist,
 * while A's objects stay untouched. B's own lists never hold anything of A's. An operator,
 * by contrast, reaches both accounts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createSqliteStore } from "../../src/store/sqlite/index.js";
import { createUser, PASSWORD, PortalClient, startPortal } from "./support.js";
import type { PortalServer, Res } from "./support.js";

describe("one customer trying every id of another's", () => {
  let dir: string;
  let server: PortalServer;
  let a: PortalClient;
  let b: PortalClient;
  const ids = { account: "", app: "", key: "", rotatedKey: "", log: "", secret: "" };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-portal-isolation-"));
    server = await startPortal({
      config: {
        apis: [
          { id: "pay", keyFormat: { prefix: "pk" }, scopes: ["read", "write"], features: { basic: ["read"], full: ["read", "write"] }, rateLimit: { limit: 100, windowSeconds: 60 } },
          { id: "v1", keyFormat: { prefix: "at", environments: ["live"] } },
        ],
      },
      store: createSqliteStore({ filename: join(dir, "keygate.db") }),
      portal: { operatorOnlyApis: ["v1"], ipRateLimit: { limit: 1000, windowSeconds: 60 } },
    });
    a = new PortalClient(server.app, "198.51.100.1");
    b = new PortalClient(server.app, "198.51.100.2");
    assert.equal((await a.signUp("alice@a.test", "Alice Co")).status, 201);
    assert.equal((await b.signUp("bob@b.test", "Bob Co")).status, 201);
    ids.account = a.accountId;
    ids.app = (await a.post(a.own("/applications"), { api: "pay", name: "A's app", features: ["basic"] })).body.id;
    const created = (await a.post(a.own("/keys"), { api: "pay", applicationId: ids.app, name: "A's key", password: PASSWORD })).body.key;
    ids.key = created.id;
    ids.secret = created.key;
    const toRotate = (await a.post(a.own("/keys"), { api: "pay", name: "A's other key", password: PASSWORD })).body.key;
    ids.rotatedKey = toRotate.id;
    await server.keygate.verifyKey({ api: "pay", key: ids.secret, ip: "203.0.113.1" }, { method: "GET", path: "/a-only" });
    await server.keygate.flush();
    ids.log = (await a.get(a.own("/logs"))).body.data[0].id;
    // B has data of its own, so empty answers cannot pass by accident.
    const bApp = (await b.post(b.own("/applications"), { api: "pay", name: "B's app" })).body.id;
    const bKey = (await b.post(b.own("/keys"), { api: "pay", applicationId: bApp, name: "B's key", password: PASSWORD })).body.key;
    await server.keygate.verifyKey({ api: "pay", key: bKey.key }, { method: "GET", path: "/b-only" });
    await server.keygate.flush();
  });

  after(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A 404 exactly like the one for an id that does not exist: same status, same code, the same
   * words but for the id asked about, and nothing else of A's.
   */
  const assertNotFound = async (res: Res, code: string, probe: () => Promise<Res>, id: string, fake: string): Promise<void> => {
    assert.equal(res.status, 404, `expected 404 ${code}, got ${res.status}: ${res.raw}`);
    assert.equal(res.body.code, code, res.raw);
    const unknown = await probe();
    assert.equal(unknown.status, 404, unknown.raw);
    assert.equal(unknown.body.code, code);
    assert.equal(res.body.detail, unknown.body.detail.replace(fake, id), "the same words as for a missing id");
    for (const other of [ids.account, ids.app, ids.key, ids.rotatedKey, ids.log, ids.secret, "Alice", "alice@a.test"]) {
      if (other !== id) assert.ok(!res.raw.includes(other), `${other} leaked in ${res.raw}`);
    }
  };

  test("A's account, under B's session: every route answers 404 ACCOUNT_NOT_FOUND", async () => {
    const fake = "acc_doesnotexist0000000";
    const other = (path: string) => `/portal/api/accounts/${ids.account}${path}`;
    const none = (path: string) => `/portal/api/accounts/${fake}${path}`;
    const probes: Array<[method: "GET" | "POST" | "PUT" | "PATCH", path: string, body?: unknown]> = [
      ["GET", ""], ["PUT", "/ip-allowlists", { ipAllowlists: { live: ["203.0.113.9"] } }],
      ["GET", "/applications"], ["POST", "/applications", { api: "pay", name: "Planted" }],
      ["GET", `/applications/${ids.app}`], ["PATCH", `/applications/${ids.app}`, { name: "Hijacked" }],
      ["GET", "/keys"], ["POST", "/keys", { api: "pay", name: "Planted", password: PASSWORD }],
      ["GET", `/keys/${ids.key}`], ["POST", `/keys/${ids.key}/revoke`, {}], ["POST", `/keys/${ids.key}/rotate`, { gracePeriodSeconds: 0, password: PASSWORD }],
      ["GET", `/keys/${ids.key}/usage`], ["GET", "/analytics"], ["GET", "/logs"], ["GET", `/logs/${ids.log}`], ["GET", "/events"],
    ];
    for (const [method, path, body] of probes) {
      await assertNotFound(await b.request(method, other(path), body), "ACCOUNT_NOT_FOUND", () => b.request(method, none(path), body), ids.account, fake);
    }
  });

  test("A's applications, keys and logs under B's own account: 404 as if they did not exist", async () => {
    const cases: Array<[method: "GET" | "POST" | "PATCH", path: (id: string) => string, id: string, code: string, body?: unknown]> = [
      ["GET", (id) => `/applications/${id}`, ids.app, "APPLICATION_NOT_FOUND"],
      ["PATCH", (id) => `/applications/${id}`, ids.app, "APPLICATION_NOT_FOUND", { name: "Hijacked", features: ["full"] }],
      ["GET", (id) => `/keys/${id}`, ids.key, "KEY_NOT_FOUND"],
      ["POST", (id) => `/keys/${id}/revoke`, ids.key, "KEY_NOT_FOUND", {}],
      ["POST", (id) => `/keys/${id}/rotate`, ids.rotatedKey, "KEY_NOT_FOUND", { gracePeriodSeconds: 60, password: PASSWORD }],
      ["GET", (id) => `/keys/${id}/usage`, ids.key, "KEY_NOT_FOUND"],
      ["GET", (id) => `/logs/${id}`, ids.log, "LOG_NOT_FOUND"],
      // A's ids as filters: a 404, never an empty (or worse, a full) answer.
      ["GET", (id) => `/keys?applicationId=${id}`, ids.app, "APPLICATION_NOT_FOUND"],
      ["GET", (id) => `/analytics?keyId=${id}`, ids.key, "KEY_NOT_FOUND"],
      ["GET", (id) => `/analytics?applicationId=${id}&groupBy=key`, ids.app, "APPLICATION_NOT_FOUND"],
      ["GET", (id) => `/logs?keyId=${id}`, ids.key, "KEY_NOT_FOUND"],
      ["GET", (id) => `/logs?applicationId=${id}`, ids.app, "APPLICATION_NOT_FOUND"],
      ["GET", (id) => `/events?keyId=${id}`, ids.key, "KEY_NOT_FOUND"],
      ["GET", (id) => `/events?applicationId=${id}`, ids.app, "APPLICATION_NOT_FOUND"],
      // Creating a key under A's application.
      ["POST", () => "/keys", ids.app, "APPLICATION_NOT_FOUND", { api: "pay", applicationId: ids.app, name: "Planted", password: PASSWORD }],
    ];
    for (const [method, path, id, code, body] of cases) {
      const fake = id.replace(/^(\w+_)\w+$/, (_, p: string) => `${p}doesnotexist0000000000`);
      const probeBody = body && typeof body === "object" && "applicationId" in body ? { ...body, applicationId: fake } : body;
      await assertNotFound(await b.request(method, b.own(path(id)), body), code, () => b.request(method, b.own(path(fake)), probeBody), id, fake);
    }
  });

  test("nothing of A's changed, and A still has it all", async () => {
    const key = await server.keygate.keys.get(ids.key);
    assert.equal(key.status, "active");
    assert.equal((await server.keygate.keys.get(ids.rotatedKey)).status, "active");
    const app = await server.keygate.applications.get(ids.app);
    assert.deepEqual([app.name, app.features], ["A's app", ["basic"]]);
    assert.deepEqual((await server.keygate.accounts.get(ids.account)).ipAllowlists, {});
    assert.equal((await server.keygate.keys.list({ accountId: ids.account })).data.length, 2);
    assert.equal((await server.keygate.applications.list({ accountId: ids.account })).data.length, 1);
    assert.equal((await a.get(a.own(`/keys/${ids.key}`))).status, 200);
    assert.equal((await a.get(a.own(`/logs/${ids.log}`))).status, 200);
  });

  test("B's own lists, usage and logs hold nothing of A's", async () => {
    const everything = [
      await b.get(b.own("/keys")), await b.get(b.own("/applications")), await b.get(b.own("/logs?limit=100")),
      await b.get(b.own("/analytics?interval=minute&groupBy=key")), await b.get(b.own("/analytics?interval=day&groupBy=application")),
      await b.get("/portal/api/accounts"), await b.get("/portal/api/session"),
    ];
    for (const res of everything) {
      assert.equal(res.status, 200, res.raw);
      for (const id of [ids.account, ids.app, ids.key, ids.rotatedKey, ids.log, ids.secret, "alice@a.test", "/a-only"]) {
        assert.ok(!res.raw.includes(id), `${id} in ${res.raw}`);
      }
    }
    assert.equal(everything[0]!.body.data.length, 1);
    assert.equal(everything[2]!.body.data.length, 1);
    assert.deepEqual(everything[5]!.body.data.map((x: { id: string }) => x.id), [b.accountId], "a customer's account list is its own account");
    assert.equal((await b.post("/portal/api/accounts", { name: "Mine", email: "mine@b.test" })).body.code, "OPERATOR_REQUIRED");
  });

  test("an operator reaches both accounts, and alone may issue keys of an operator-only API", async () => {
    assert.equal((await createUser(server.app, { email: "ops@provider.test", password: PASSWORD, operator: true })).status, 201);
    const ops = new PortalClient(server.app, "198.51.100.3");
    assert.equal((await ops.signIn("ops@provider.test")).status, 200);
    const accounts = (await ops.get("/portal/api/accounts")).body.data.map((x: { id: string }) => x.id);
    assert.ok(accounts.includes(ids.account) && accounts.includes(b.accountId));
    assert.equal((await ops.get(`/portal/api/accounts/${ids.account}/keys/${ids.key}`)).status, 200);
    // Even an operator's request names the account the object belongs to.
    assert.equal((await ops.get(`/portal/api/accounts/${b.accountId}/keys/${ids.key}`)).status, 404);

    assert.equal((await b.post(b.own("/keys"), { api: "v1", name: "Mine", password: PASSWORD })).body.code, "OPERATOR_ONLY_API");
    const provisioned = await ops.post(`/portal/api/accounts/${b.accountId}/keys`, { api: "v1", name: "V1 token", password: PASSWORD });
    assert.equal(provisioned.status, 201, provisioned.raw);
    const token = provisioned.body.key;
    assert.equal(token.accountId, b.accountId);
    const seen = (await b.get(b.own("/keys"))).body.data.find((k: { id: string }) => k.id === token.id);
    assert.ok(seen, "B sees the token the operator issued for it");
    assert.equal((await b.post(b.own(`/keys/${token.id}/revoke`))).body.code, "OPERATOR_ONLY_API");
    assert.equal((await b.post(b.own(`/keys/${token.id}/rotate`), { gracePeriodSeconds: 0, password: PASSWORD })).body.code, "OPERATOR_ONLY_API");
    assert.equal((await ops.post(`/portal/api/accounts/${b.accountId}/keys/${token.id}/revoke`)).body.status, "revoked");
  });
});
