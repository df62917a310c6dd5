/**
 * GitHub's secret-scanning partner alerts, end to end: a local HTTP server stands in for
 * GitHub's public-key endpoint and serves P-256 keys made here; bodies are signed with their
 * private halves as GitHub signs them. Checked: revoke and flag, the labels GitHub gets back,
 * forged and unsigned deliveries, key rotation (unknown key id → refetch), malformed bodies,
 * GitHub being unreachable, and that no token ever reaches the log.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, sign } from "node:crypto";
import type { KeyObject } from "node:crypto";
import { createServer } from "node:http";
import type { IncomingHttpHeaders, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { pino } from "pino";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createGithubPublicKeys } from "../../src/scanning/github/public-keys.js";
import { createManualClock } from "../../src/lib/clock.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "github-alerts-test-root-key-0123456789abc";
const ROOT_HASH = createHash("sha256").update(ROOT).digest("hex");
const PATH = "/meta/public_keys/secret_scanning";

interface SigningKey { id: string; privateKey: KeyObject; pem: string }

const newSigningKey = (id: string): SigningKey => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { id, privateKey, pem: publicKey.export({ type: "spki", format: "pem" }).toString() };
};

/** GitHub's key endpoint, served from `keys`, which a test may change (rotation) or break. */
interface FakeGithub {
  url: string;
  keys: SigningKey[];
  status: number;
  requests: IncomingHttpHeaders[];
  close(): Promise<void>;
}

async function startFakeGithub(keys: SigningKey[]): Promise<FakeGithub> {
  const fake = { keys, status: 200, requests: [] as IncomingHttpHeaders[] } as FakeGithub;
  const server: Server = createServer((req, res) => {
    fake.requests.push(req.headers);
    if (req.url !== PATH) return void res.writeHead(404).end();
    const body = fake.status === 200
      ? JSON.stringify({ public_keys: fake.keys.map((k, i) => ({ key_identifier: k.id, key: k.pem, is_current: i === fake.keys.length - 1 })) })
      : "{\"message\":\"Server Error\"}";
    res.writeHead(fake.status, { "content-type": "application/json" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${PATH}`;
  fake.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return fake;
}

/** GitHub's signature: ECDSA P-256 over SHA-256 of the exact body, DER, base64. */
const signBody = (body: string, key: SigningKey): string =>
  sign("sha256", Buffer.from(body), { key: key.privateKey, dsaEncoding: "der" }).toString("base64");

const API = { id: "demo", keyFormat: { prefix: "sk", environments: ["live", "test"], length: 32, checksum: true } };

interface Harness {
  t: TestKeygate;
  app: FastifyInstance;
  logs: string[];
  /** POSTs `body` signed by `signer`, announcing `keyId` (the signer's own id by default). */
  deliver(body: string, signer: SigningKey, keyId?: string): Promise<LightMyRequestResponse>;
}

async function harness(secretScanning: Record<string, unknown>): Promise<Harness> {
  const t = await createTestKeygate({ apis: [API], secretScanning });
  const logs: string[] = [];
  const logger = pino({ level: "debug" }, new Writable({ write(chunk, _enc, done) { logs.push(String(chunk)); done(); } }));
  const app = await buildServer({ keygate: t.keygate, rootKeyHash: ROOT_HASH, logger });
  return {
    t, app, logs,
    deliver: (body, signer, keyId = signer.id) => app.inject({
      method: "POST", url: "/secret-scanning/github", payload: body,
      headers: { "content-type": "application/json", "github-public-key-identifier": keyId, "github-public-key-signature": signBody(body, signer) },
    }),
  };
}

const alert = (token: string, url = "https://github.com/octo/app/blob/abc123/.env", source = "content") =>
  ({ token, type: "demo_api_key", url, source });

describe("GitHub secret-scanning alerts", () => {
  const keyA = newSigningKey("a".repeat(64));
  const keyB = newSigningKey("b".repeat(64));
  let github: FakeGithub;
  let revoking: Harness;
  let flagging: Harness;

  before(async () => {
    github = await startFakeGithub([keyA]);
    const gh = { enabled: true, publicKeysUrl: github.url, refetchIntervalSeconds: 0, publicKeysToken: "ghs_test_token" };
    revoking = await harness({ action: "revoke", github: gh });
    flagging = await harness({ action: "flag", github: gh });
  });
  after(async () => {
    for (const h of [revoking, flagging]) {
      await h?.app.close();
      await h?.t.keygate.close();
    }
    await github?.close();
  });

  const newKey = async (h: Harness, metadata: Record<string, unknown> = {}) =>
    h.t.keygate.keys.create({ api: "demo", accountId: h.t.accountId, environment: "live", metadata });

  test("revoke: a leaked key is revoked, its leak recorded, and GitHub hears true_positive; others are false_positive", async () => {
    const leaked = await newKey(revoking, { team: "payments" });
    const bystander = await newKey(revoking);
    const neverIssued = revoking.t.keygate.apis.get("demo")!.codec.generate("live");
    const body = JSON.stringify([alert(leaked.key), alert(neverIssued), alert("sk_live_notakeyatall"), { ...alert("AKIAIOSFODNN7EXAMPLE"), type: "other" }]);
    const res = await revoking.deliver(body, keyA);
    assert.equal(res.statusCode, 200, res.body);
    assert.match(String(res.headers["content-type"]), /^application\/json/);
    assert.deepEqual(res.json(), [
      { token_raw: leaked.key, token_type: "demo_api_key", label: "true_positive" },
      { token_raw: neverIssued, token_type: "demo_api_key", label: "false_positive" },
      { token_raw: "sk_live_notakeyatall", token_type: "demo_api_key", label: "false_positive" },
      { token_raw: "AKIAIOSFODNN7EXAMPLE", token_type: "other", label: "false_positive" },
    ]);

    const after = await revoking.t.keygate.keys.get(leaked.id);
    assert.equal(after.status, "revoked");
    assert.deepEqual(after.metadata, {
      team: "payments",
      leaked: { url: "https://github.com/octo/app/blob/abc123/.env", source: "content", reporter: "github", at: after.metadata.leaked && (after.metadata.leaked as { at: string }).at, action: "revoked" },
    });
    assert.ok(!Number.isNaN(Date.parse((after.metadata.leaked as { at: string }).at)));
    const verdict = await revoking.t.keygate.verifyKey({ api: "demo", key: leaked.key });
    assert.equal(verdict.code, "REVOKED");
    assert.equal((await revoking.t.keygate.keys.get(bystander.id)).status, "active", "only the reported key is touched");

    // GitHub was asked for its keys as an API client, with the configured token.
    assert.equal(github.requests[0]!["user-agent"], "keygate-secret-scanning");
    assert.equal(github.requests[0]!.authorization, "Bearer ghs_test_token");
  });

  test("the log names the leaked key and where it was found, never a token", async () => {
    const leaked = await newKey(revoking);
    const res = await revoking.deliver(JSON.stringify([alert(leaked.key, "https://github.com/octo/app/issues/7", "issue_comment")]), keyA);
    assert.equal(res.statusCode, 200);
    const log = revoking.logs.join("");
    assert.ok(log.includes(leaked.id), "the key id is logged");
    assert.ok(log.includes("https://github.com/octo/app/issues/7"));
    assert.ok(!log.includes(leaked.key), "the secret is not");
    assert.ok(!log.includes(leaked.key.slice(8)), "not even its body");
  });

  test("flag: the key stays usable, its leak is recorded, GitHub hears true_positive", async () => {
    const leaked = await newKey(flagging);
    const res = await flagging.deliver(JSON.stringify([alert(leaked.key, "https://www.npmjs.com/package/x", "npm")]), keyA);
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), [{ token_raw: leaked.key, token_type: "demo_api_key", label: "true_positive" }]);
    const after = await flagging.t.keygate.keys.get(leaked.id);
    assert.equal(after.status, "active");
    assert.deepEqual({ ...(after.metadata.leaked as object), at: "-" }, { url: "https://www.npmjs.com/package/x", source: "npm", reporter: "github", at: "-", action: "flagged" });
    assert.equal((await flagging.t.keygate.verifyKey({ api: "demo", key: leaked.key })).valid, true);
  });

  test("flag: a key revoked before is reported as revoked, still a true positive", async () => {
    const leaked = await newKey(flagging);
    await flagging.t.keygate.keys.revoke(leaked.id);
    const res = await flagging.deliver(JSON.stringify([alert(leaked.key)]), keyA);
    assert.equal(res.json()[0].label, "true_positive");
    assert.equal(((await flagging.t.keygate.keys.get(leaked.id)).metadata.leaked as { action: string }).action, "revoked");
  });

  test("a forged, tampered, unsigned or garbled delivery is refused with 401 and changes nothing", async () => {
    const leaked = await newKey(revoking);
    const body = JSON.stringify([alert(leaked.key)]);
    const post = (headers: Record<string, string>, payload = body) =>
      revoking.app.inject({ method: "POST", url: "/secret-scanning/github", payload, headers: { "content-type": "application/json", ...headers } });
    const cases: Array<[string, Record<string, string>, string | undefined, string]> = [
      ["signed by another key under A's id", { "github-public-key-identifier": keyA.id, "github-public-key-signature": signBody(body, keyB) }, undefined, "INVALID_SIGNATURE"],
      ["a signature of another body", { "github-public-key-identifier": keyA.id, "github-public-key-signature": signBody("[]", keyA) }, undefined, "INVALID_SIGNATURE"],
      ["a body changed after signing", { "github-public-key-identifier": keyA.id, "github-public-key-signature": signBody(body, keyA) }, `${body} `, "INVALID_SIGNATURE"],
      ["a signature that is not base64", { "github-public-key-identifier": keyA.id, "github-public-key-signature": "not base64!" }, undefined, "INVALID_SIGNATURE"],
      ["base64 that is not DER", { "github-public-key-identifier": keyA.id, "github-public-key-signature": Buffer.from("garbage").toString("base64") }, undefined, "INVALID_SIGNATURE"],
      ["no signature", { "github-public-key-identifier": keyA.id }, undefined, "MISSING_SIGNATURE"],
      ["no headers at all", {}, undefined, "MISSING_SIGNATURE"],
    ];
    for (const [what, headers, payload, code] of cases) {
      const res = await post(headers, payload);
      assert.equal(res.statusCode, 401, what);
      assert.equal(res.json().code, code, what);
      assert.ok(!res.body.includes(leaked.key), `${what}: the token is not echoed`);
    }
    assert.equal((await revoking.t.keygate.keys.get(leaked.id)).status, "active");
  });

  test("an unknown key id refetches GitHub's keys: a rotated-in key is accepted, a made-up one refused", async () => {
    const before = github.requests.length;
    github.keys = [keyA, keyB];
    const leaked = await newKey(revoking);
    const res = await revoking.deliver(JSON.stringify([alert(leaked.key)]), keyB);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json()[0].label, "true_positive");
    assert.equal(github.requests.length, before + 1, "fetched once more, for the new id");
    // Now known: no further fetch.
    assert.equal((await revoking.deliver("[]", keyB)).statusCode, 200);
    assert.equal(github.requests.length, before + 1);

    const madeUp = await revoking.deliver("[]", keyA, "c".repeat(64));
    assert.equal(madeUp.statusCode, 401);
    assert.equal(madeUp.json().code, "UNKNOWN_PUBLIC_KEY");
    github.keys = [keyA];
  });

  test("a signed body that is not an alert list is a 400 with a stable code, never a 500, and never echoes a token", async () => {
    const leaked = await newKey(revoking);
    const cases: Array<[string, string]> = [
      [`[{"token":"${leaked.key}","type":"demo_api_key"`, "MALFORMED_JSON"],
      ["", "MALFORMED_JSON"],
      [JSON.stringify({ token: leaked.key, type: "demo_api_key" }), "INVALID_ALERT"],
      [JSON.stringify([{ type: "demo_api_key", url: "u", source: "content" }]), "INVALID_ALERT"],
      [JSON.stringify([{ token: 42, type: "demo_api_key" }]), "INVALID_ALERT"],
      [JSON.stringify([{ token: leaked.key, type: "demo_api_key", url: { x: 1 } }]), "INVALID_ALERT"],
      [JSON.stringify(["just a string"]), "INVALID_ALERT"],
    ];
    for (const [body, code] of cases) {
      const res = await revoking.deliver(body, keyA);
      assert.equal(res.statusCode, 400, body);
      assert.equal(res.json().code, code, body);
      assert.ok(!res.body.includes(leaked.key), "the token is not echoed in the error");
    }
    assert.equal((await revoking.t.keygate.keys.get(leaked.id)).status, "active", "nothing of a rejected body is acted on");
    assert.ok(!revoking.logs.join("").includes(leaked.key));
  });

  test("an empty list, any content type, and extra fields GitHub may add are accepted", async () => {
    assert.deepEqual((await revoking.deliver("[]", keyA)).json(), []);
    const leaked = await newKey(revoking);
    const body = JSON.stringify([{ ...alert(leaked.key), detected_at: "2026-01-01T00:00:00Z" }]);
    const res = await revoking.app.inject({
      method: "POST", url: "/secret-scanning/github", payload: body,
      headers: { "content-type": "text/plain; charset=utf-8", "github-public-key-identifier": keyA.id, "github-public-key-signature": signBody(body, keyA) },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json()[0].label, "true_positive");
  });

  test("the endpoint is documented in /openapi.json without the root key requirement", async () => {
    const spec = (await revoking.app.inject({ method: "GET", url: "/openapi.json" })).json() as { paths: Record<string, { post?: { security?: unknown[] } }> };
    assert.deepEqual(spec.paths["/secret-scanning/github"]?.post?.security, []);
  });
});

describe("GitHub's public keys: cache, refetch limit, outages", () => {
  const key = newSigningKey("k1");
  let github: FakeGithub;
  before(async () => { github = await startFakeGithub([key]); });
  after(async () => { await github?.close(); });

  test("cached for cacheMs; unknown ids refetch at most once per refetchIntervalMs", async () => {
    const clock = createManualClock(T0);
    const keys = createGithubPublicKeys({ url: github.url, cacheMs: 3_600_000, refetchIntervalMs: 60_000, clock });
    assert.ok(await keys.get("k1"));
    assert.equal(keys.fetches, 1);
    assert.equal(await keys.get("made-up-1"), null);
    assert.equal(await keys.get("made-up-2"), null);
    assert.equal(keys.fetches, 1, "no refetch right after a fetch");
    clock.advance(60_000);
    assert.equal(await keys.get("made-up-3"), null);
    assert.equal(keys.fetches, 2, "one refetch once the interval has passed");
    assert.ok(await keys.get("k1"));
    assert.equal(keys.fetches, 2);
    clock.advance(3_600_000);
    assert.ok(await keys.get("k1"));
    assert.equal(keys.fetches, 3, "refetched when the cache grows old");
  });

  test("concurrent lookups share one request", async () => {
    const keys = createGithubPublicKeys({ url: github.url });
    const found = await Promise.all([keys.get("k1"), keys.get("k1"), keys.get("nope")]);
    assert.ok(found[0] && found[1]);
    assert.equal(found[2], null);
    assert.equal(keys.fetches, 1);
  });

  test("while GitHub fails, known keys keep working; an unknown id is a 503 so GitHub retries", async () => {
    const clock = createManualClock(T0);
    const keys = createGithubPublicKeys({ url: github.url, cacheMs: 1000, refetchIntervalMs: 0, clock });
    assert.ok(await keys.get("k1"));
    github.status = 500;
    try {
      clock.advance(2000);
      assert.ok(await keys.get("k1"), "the stale key still verifies");
      await assert.rejects(keys.get("new-key"), (e: { code?: string; status?: number }) => e.code === "PUBLIC_KEYS_UNAVAILABLE" && e.status === 503);
    } finally {
      github.status = 200;
    }
  });

  test("entries that are not P-256 public keys are skipped", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ type: "spki", format: "pem" }).toString();
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey.export({ type: "spki", format: "pem" }).toString();
    github.keys = [{ ...key, id: "rsa", pem: rsa }, { ...key, id: "p384", pem: p384 }, { ...key, id: "junk", pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }, key];
    try {
      const keys = createGithubPublicKeys({ url: github.url, refetchIntervalMs: 60_000 });
      assert.ok(await keys.get("k1"));
      for (const id of ["rsa", "p384", "junk"]) assert.equal(await keys.get(id), null, id);
    } finally {
      github.keys = [key];
    }
  });

  test("with GitHub unreachable and nothing cached, the endpoint answers 503 PUBLIC_KEYS_UNAVAILABLE, not 500", async () => {
    const closed = await startFakeGithub([]);
    const url = closed.url;
    await closed.close();
    const t = await createTestKeygate({ apis: [API], secretScanning: { github: { enabled: true, publicKeysUrl: url, timeoutMs: 1000 } } });
    const app = await buildServer({ keygate: t.keygate, rootKeyHash: ROOT_HASH });
    try {
      const res = await app.inject({
        method: "POST", url: "/secret-scanning/github", payload: "[]",
        headers: { "content-type": "application/json", "github-public-key-identifier": key.id, "github-public-key-signature": signBody("[]", key) },
      });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().code, "PUBLIC_KEYS_UNAVAILABLE");
      assert.equal(res.headers["retry-after"], "1");
    } finally {
      await app.close();
      await t.keygate.close();
    }
  });
});
