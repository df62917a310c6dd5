/**
 * A real `keygate serve` process logging at `trace`, its most verbose level, is taken through
 * everything that handles a secret — creating, rotating and importing keys, verifying good,
 * revoked, unknown and malformed keys over the verify API, forward-auth and the gateway, and
 * requests that fail (bad JSON holding a key, a key as the root key, an upstream that is
 * down) — and nothing it printed on stdout or stderr holds any of those secrets or the root
 * key. Every stdout line is pino JSON, and the lines about a request carry its request id.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { admin, CLI, startServe } from "../support/serve.js";
import type { ServedKeygate } from "../support/serve.js";
import { freePort } from "../support/processes.js";

const ROOT_KEY = "kg_root_logs_test_0123456789abcdefghijkl";

let dir: string;
let kg: ServedKeygate;
/** Every secret the process saw, created or presented. */
const secrets = new Set<string>([ROOT_KEY]);

before(async () => {
  assert.ok(existsSync(CLI), `${CLI} is missing: run \`npm run build\` first`);
  dir = mkdtempSync(join(tmpdir(), "keygate-logs-"));
  const config = join(dir, "keygate.yaml");
  const deadPort = await freePort();
  writeFileSync(config, [
    "server: { host: 127.0.0.1 }",
    "apis:",
    "  - id: shop",
    "    keyFormat: { prefix: sk, checksum: true }",
    "    lockout: { maxAttempts: 3, windowSeconds: 60, blockSeconds: 60 }",
    "  - id: legacy",
    "    keyFormat: { prefix: lk }",
    // A gateway API whose upstream is down: the one request-scoped line keygate logs at info.
    "  - id: dead",
    "    keyFormat: { prefix: dk }",
    "    pathPrefix: /dead",
    `    upstream: http://127.0.0.1:${deadPort}`,
    "",
  ].join("\n"));
  kg = await startServe({ config, dataDir: join(dir, "data"), env: { KEYGATE_ROOT_KEY: ROOT_KEY, KEYGATE_LOG_LEVEL: "trace" } });
});
after(async () => {
  await kg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const call = (method: string, path: string, body?: unknown) => admin(kg.url, ROOT_KEY, method, path, body);
const send = (path: string, init: RequestInit = {}): Promise<Response> => fetch(`${kg.url}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });

describe("logs never hold a secret", () => {
  test("keys created, verified and refused in every way leave no secret in the output", async () => {
    const account = await call("POST", "/v1/accounts", { name: "Acme", email: "ops@acme.test" });
    assert.equal(account.status, 201);
    const accountId = account.body.id as string;
    const created = await call("POST", "/v1/keys", { api: "shop", accountId });
    assert.equal(created.status, 201);
    const good = created.body.key as string;
    const revoked = await call("POST", "/v1/keys", { api: "shop", accountId });
    await call("POST", `/v1/keys/${revoked.body.id as string}/revoke`);
    const toRotate = await call("POST", "/v1/keys", { api: "shop", accountId });
    const rotated = await call("POST", `/v1/keys/${toRotate.body.id as string}/rotate`, { gracePeriodSeconds: 0 });
    assert.equal(rotated.status, 201);
    const imported = "lk_live_importedSecret0123456789ABCDEFGH";
    const importedRes = await call("POST", "/v1/keys/import", { api: "legacy", keys: [{ accountId, key: imported }] });
    assert.equal(importedRes.status, 201, JSON.stringify(importedRes.body));
    // Refused imports: the same secret twice, and a secret already in the store.
    assert.ok((await call("POST", "/v1/keys/import", { api: "legacy", keys: [{ accountId, key: `${imported.slice(0, -1)}x` }, { accountId, key: `${imported.slice(0, -1)}x` }] })).status >= 400);
    assert.ok((await call("POST", "/v1/keys/import", { api: "legacy", keys: [{ accountId, key: imported }] })).status >= 400);
    const gateKey = (await call("POST", "/v1/keys", { api: "dead", accountId })).body.key as string;

    // A well-formed key no one issued, and malformed keys that look like secrets: a good key
    // with its last character changed (the checksum fails) or with another prefix.
    const unknown = `${good.slice(0, 8)}${"Q".repeat(good.length - 8)}`;
    const badChecksum = `${good.slice(0, -1)}${good.endsWith("A") ? "B" : "A"}`;
    const otherPrefix = `xx${good.slice(2)}`;
    for (const s of [good, revoked.body.key, toRotate.body.key, rotated.body.key.key, imported, `${imported.slice(0, -1)}x`, gateKey, unknown, badChecksum, otherPrefix]) secrets.add(s as string);

    const codes: string[] = [];
    for (const key of [good, revoked.body.key, toRotate.body.key, rotated.body.key.key, imported, unknown, badChecksum, otherPrefix]) {
      const r = await call("POST", "/v1/keys/verify", { api: key === imported ? "legacy" : "shop", key, ip: "203.0.113.5" });
      codes.push(r.body.code);
    }
    assert.deepEqual(codes.slice(0, 5), ["VALID", "REVOKED", "ROTATED", "VALID", "VALID"]);
    assert.ok(codes.slice(5).every((c) => c !== "VALID"), codes.join(","));
    assert.ok(codes.includes("MALFORMED_KEY"), codes.join(","));

    // Forward-auth, with the key in each place a client may put it; and enough failures from
    // one IP to be locked out.
    for (const key of [good, badChecksum, unknown]) {
      await (await send("/_auth/shop", { headers: { authorization: `Bearer ${key}` } })).arrayBuffer();
      await (await send("/_auth/shop", { headers: { "x-api-key": key, "x-original-uri": `/orders?api_key=${key}` } })).arrayBuffer();
    }
    for (let i = 0; i < 4; i++) await call("POST", "/v1/keys/verify", { api: "shop", key: unknown, ip: "203.0.113.6" });

    // Errors: a body that is not JSON and holds a key, unknown fields, a key as the root key, a key in the URL.
    const malformedBody = await send("/v1/keys/verify", { method: "POST", headers: { authorization: `Bearer ${ROOT_KEY}`, "content-type": "application/json" }, body: `{"api":"shop","key":"${good}"` });
    assert.equal(malformedBody.status, 400);
    assert.equal((await call("POST", "/v1/keys/verify", { api: "shop", key: good, secret: good })).status, 400);
    const wrongRoot = await send("/v1/keys", { headers: { authorization: `Bearer ${good}` } });
    assert.equal(wrongRoot.status, 401);
    assert.equal((await send(`/v1/keys/${good}`, { headers: { authorization: `Bearer ${ROOT_KEY}` } })).status, 404);

    // The gateway in front of an upstream that is down: 502, and a warning naming the request.
    const viaGateway = await send("/dead/orders", { headers: { authorization: `Bearer ${gateKey}`, "x-request-id": "client-chosen-id.1" } });
    assert.equal(viaGateway.status, 502);
    assert.equal(viaGateway.headers.get("x-request-id"), "client-chosen-id.1");
    const generated = await send("/dead/orders", { headers: { authorization: `Bearer ${gateKey}` } });
    assert.equal(generated.status, 502);
    const generatedId = generated.headers.get("x-request-id")!;
    assert.match(generatedId, /^req_[A-Za-z0-9_-]{16}$/);

    await kg.stop();
    const output = kg.logs.join("\n");
    const leaked = [...secrets].filter((s) => output.includes(s));
    assert.deepEqual(leaked, [], "no secret in stdout or stderr");
    // Nor a recognisable part of one: the random body of each created key.
    for (const s of [good, gateKey, rotated.body.key.key as string]) assert.ok(!output.includes(s.slice(-20)), "no secret body");

    const lines = kg.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const l of lines) {
      assert.equal(typeof l.level, "number");
      assert.equal(typeof l.time, "number");
      assert.equal(l.service, "keygate");
      assert.equal(typeof l.msg, "string");
    }
    const upstreamFailed = lines.filter((l) => l.msg === "upstream failed");
    assert.deepEqual(upstreamFailed.map((l) => [l.reqId, l.requestId]), [["client-chosen-id.1", "client-chosen-id.1"], [generatedId, generatedId]]);
    assert.ok(upstreamFailed.every((l) => l.api === "dead" && typeof l.upstream === "string"));
    console.log(`${lines.length} log lines at trace level checked against ${secrets.size} secrets; ${upstreamFailed.length} request-scoped lines carry their request id`);
  });
});
