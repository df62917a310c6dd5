/**
 * Applications and the client-credentials → JWT exchange, in-process over HTTP (inject) with a
 * frozen clock: both token endpoint styles, the JWT on the gateway's routes, revocation and
 * expiry, forged tokens (RFC 8725), signing-key rotation and the JWKS.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, generateKeyPair, jwtVerify } from "jose";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";
import { startUpstream } from "../http/gateway-support.js";
import type { Echo, Upstream } from "../http/gateway-support.js";

const ROOT = "tokens-test-root-key-0123456789abcdefghij";

const api = (upstream: string) => ({
  id: "pay",
  keyFormat: { prefix: "SK", environments: ["live"], environmentInKey: false, length: 40, checksum: true },
  scopes: ["payments.read", "payments.write", "payouts.read", "payouts.write"],
  features: { "payment-api": ["payments.read", "payments.write"], "payout-api": ["payouts.read", "payouts.write"] },
  credentials: [{ type: "jwt" }],
  lockout: { enabled: true, maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 },
  tokens: {
    ttlSeconds: 3600, algorithm: "EdDSA", issuer: "https://pay.example.test",
    endpoints: [{ style: "clickpesa", path: "/third-parties/generate-token" }, { style: "oauth2", path: "/oauth/token" }],
  },
  upstream,
  routes: [
    { methods: ["GET"], path: "/third-parties/payments/*", scopes: ["payments.read"] },
    { methods: ["POST"], path: "/third-parties/payouts/*", scopes: ["payouts.write"] },
  ],
});

describe("applications and JWT exchange", () => {
  let t: TestKeygate;
  let app: FastifyInstance;
  let upstream: Upstream;
  let ip = 0;
  /** A fresh client address per test, so lockout counts of one test never reach another. */
  const nextIp = (): string => `198.51.100.${++ip}`;

  const adminCall = async (method: "GET" | "POST" | "PATCH", url: string, payload?: unknown) => {
    const res = await app.inject({ method, url, headers: { authorization: `Bearer ${ROOT}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
    return { status: res.statusCode, body: res.json() };
  };
  const newApp = async (features: string[]) =>
    (await adminCall("POST", "/v1/applications", { accountId: t.accountId, api: "pay", name: "Shop", features })).body as { id: string; clientId: string; scopes: string[] };
  const newKey = async (applicationId: string, extra: Record<string, unknown> = {}) =>
    (await adminCall("POST", "/v1/keys", { api: "pay", accountId: t.accountId, applicationId, ...extra })).body as { id: string; key: string; scopes: string[] };
  const generate = (clientId: string | undefined, key: string | undefined, remoteAddress = nextIp()) =>
    app.inject({
      method: "POST", url: "/third-parties/generate-token", remoteAddress,
      headers: { ...(clientId !== undefined ? { "client-id": clientId } : {}), ...(key !== undefined ? { "api-key": key } : {}) },
    });
  const tokenFor = async (clientId: string, key: string): Promise<string> => {
    const res = await generate(clientId, key);
    assert.equal(res.statusCode, 200, res.body);
    return (res.json() as { token: string }).token.replace(/^Bearer /, "");
  };
  const callApi = (token: string, url = "/third-parties/payments/123", method: "GET" | "POST" = "GET", remoteAddress = nextIp()) =>
    app.inject({ method, url, remoteAddress, headers: { authorization: `Bearer ${token}` } });

  before(async () => {
    upstream = await startUpstream("pay-upstream");
    t = await createTestKeygate({ apis: [api(upstream.url)] }, T0);
    app = await buildServer({ keygate: t.keygate, rootKeyHash: createHash("sha256").update(ROOT).digest("hex") });
    // The clock is frozen at T0, long past; jose checks exp/iat against keygate's clock.
  });
  after(async () => {
    await app?.close();
    await t?.keygate.close();
    await upstream?.close();
  });

  test("an application's features grant its keys their scopes; a Client ID is issued", async () => {
    const created = await adminCall("POST", "/v1/applications", { accountId: t.accountId, api: "pay", name: "Shop", integrationType: "api", features: ["payment-api"] });
    assert.equal(created.status, 201);
    assert.match(created.body.clientId, /^ID[0-9A-Za-z]{30}$/);
    assert.deepEqual(created.body.scopes, ["payments.read", "payments.write"]);
    const key = await newKey(created.body.id);
    assert.deepEqual(key.scopes, ["payments.read", "payments.write"]);
    const got = await adminCall("GET", `/v1/applications/${created.body.id}`);
    assert.equal(got.body.clientId, created.body.clientId);
    const listed = await adminCall("GET", `/v1/applications?accountId=${t.accountId}`);
    assert.ok(listed.body.data.some((a: { id: string }) => a.id === created.body.id));
  });

  test("applications are listed a page at a time: limit and cursor from the query string", async () => {
    const owner = await t.keygate.accounts.create({ name: "Pager", email: "pager@example.test" });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await adminCall("POST", "/v1/applications", { accountId: owner.id, api: "pay", name: `P${i}` })).body.id);
    const first = await adminCall("GET", `/v1/applications?accountId=${owner.id}&limit=2`);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.data.length, 2);
    assert.ok(first.body.nextCursor);
    const second = await adminCall("GET", `/v1/applications?accountId=${owner.id}&limit=2&cursor=${first.body.nextCursor}`);
    assert.equal(second.status, 200);
    assert.deepEqual([...first.body.data, ...second.body.data].map((a: { id: string }) => a.id).sort(), [...ids].sort());
    for (const bad of ["limit=0", "limit=101", "limit=ten", "cursor=key_abc"]) {
      const res = await adminCall("GET", `/v1/applications?${bad}`);
      assert.equal(res.status, 400, bad);
    }
  });

  test("bad application and key input gets a 400 with a stable code", async () => {
    const unknownFeature = await adminCall("POST", "/v1/applications", { accountId: t.accountId, api: "pay", name: "X", features: ["crypto-api"] });
    assert.equal(unknownFeature.status, 400);
    assert.equal(unknownFeature.body.code, "UNKNOWN_FEATURE");
    const unknownAccount = await adminCall("POST", "/v1/applications", { accountId: "acc_nope", api: "pay", name: "X" });
    assert.equal(unknownAccount.body.code, "UNKNOWN_ACCOUNT");
    const extraField = await adminCall("POST", "/v1/applications", { accountId: t.accountId, api: "pay", name: "X", secret: "no" });
    assert.equal(extraField.status, 400);
    const a = await newApp(["payment-api"]);
    const notGranted = await adminCall("POST", "/v1/keys", { api: "pay", accountId: t.accountId, applicationId: a.id, scopes: ["payouts.write"] });
    assert.equal(notGranted.status, 400);
    assert.equal(notGranted.body.code, "SCOPE_NOT_GRANTED");
    const other = await t.keygate.accounts.create({ name: "Other", email: "other@example.test" });
    const mismatch = await adminCall("POST", "/v1/keys", { api: "pay", accountId: other.id, applicationId: a.id });
    assert.equal(mismatch.body.code, "APPLICATION_MISMATCH");
    const unknownApp = await adminCall("POST", "/v1/keys", { api: "pay", accountId: t.accountId, applicationId: "app_nope" });
    assert.equal(unknownApp.body.code, "UNKNOWN_APPLICATION");
    assert.equal((await adminCall("GET", "/v1/applications/app_nope")).status, 404);
  });

  test("Client ID + API key → {success, token: 'Bearer <jwt>'}, an EdDSA JWT valid one hour", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const res = await generate(a.clientId, k.key);
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["cache-control"], "no-store");
    const body = res.json() as { success: boolean; token: string };
    assert.equal(body.success, true);
    assert.match(body.token, /^Bearer eyJ/);
    const jwt = body.token.slice(7);
    const header = decodeProtectedHeader(jwt);
    assert.equal(header.alg, "EdDSA");
    assert.equal(header.typ, "at+jwt");
    assert.equal(typeof header.kid, "string");
    const claims = decodeJwt(jwt);
    assert.equal(claims.aud, "pay");
    assert.equal(claims.iss, "https://pay.example.test");
    assert.equal(claims.sub, k.id);
    assert.equal(claims.exp! - claims.iat!, 3600);
    assert.equal(claims.iat, Math.floor(t.clock.now() / 1000));
    assert.equal(typeof claims.jti, "string");
    assert.equal(claims.scope, "payments.read payments.write");
    assert.ok(!jwt.includes(k.key) && !JSON.stringify(claims).includes(k.key), "the API key is not in the token");
    // Anyone can verify it against the published JWKS.
    const jwks = (await app.inject({ method: "GET", url: "/.well-known/jwks.json" })).json() as { keys: Array<Record<string, unknown>> };
    assert.ok(jwks.keys.every((key) => key.d === undefined), "no private key material in the JWKS");
    const verified = await jwtVerify(jwt, createLocalJWKSet(jwks as never), { audience: "pay", currentDate: new Date(t.clock.now()) });
    assert.equal(verified.payload.sub, k.id);
  });

  test("the JWT opens the API's routes, with identity headers upstream and without the token", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const jwt = await tokenFor(a.clientId, k.key);
    const res = await callApi(jwt);
    assert.equal(res.statusCode, 200, res.body);
    const echo = res.json() as Echo;
    assert.equal(echo.headers.authorization, undefined);
    assert.equal(echo.headers["x-keygate-key-id"], k.id);
    assert.equal(echo.headers["x-keygate-application-id"], a.id);
    // The payment-api feature grants no payout scope.
    const denied = await callApi(jwt, "/third-parties/payouts/1", "POST");
    assert.equal(denied.statusCode, 403);
    assert.equal(denied.json().code, "INSUFFICIENT_SCOPE");
    assert.match(String(denied.headers["www-authenticate"]), /error="insufficient_scope"/);
  });

  test("an API key where the JWT belongs, a wrong Client ID, or missing headers: 401", async () => {
    const a = await newApp(["payment-api"]);
    const b = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const direct = await callApi(k.key);
    assert.equal(direct.statusCode, 401);
    assert.equal(direct.json().code, "INVALID_TOKEN");
    assert.match(String(direct.headers["www-authenticate"]), /^Bearer realm="pay", error="invalid_token"/);
    const wrongClient = await generate(b.clientId, k.key);
    assert.equal(wrongClient.statusCode, 401);
    assert.equal(wrongClient.json().code, "NOT_FOUND");
    assert.equal((await generate("IDnotaclient", k.key)).statusCode, 401);
    const missing = await generate(a.clientId, undefined);
    assert.equal(missing.statusCode, 401);
    assert.equal(missing.json().code, "MISSING_CREDENTIALS");
    const none = await app.inject({ method: "GET", url: "/third-parties/payments/1" });
    assert.equal(none.statusCode, 401);
    assert.equal(none.json().code, "MISSING_CREDENTIALS");
  });

  test("revoking the API key stops its JWTs on the next request; so does disabling it", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const jwt = await tokenFor(a.clientId, k.key);
    assert.equal((await callApi(jwt)).statusCode, 200);
    await adminCall("PATCH", `/v1/keys/${k.id}`, { enabled: false });
    assert.equal((await callApi(jwt)).json().code, "DISABLED");
    await adminCall("PATCH", `/v1/keys/${k.id}`, { enabled: true });
    assert.equal((await callApi(jwt)).statusCode, 200);
    await adminCall("POST", `/v1/keys/${k.id}/revoke`);
    const res = await callApi(jwt);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, "REVOKED");
    assert.equal((await generate(a.clientId, k.key)).json().code, "REVOKED");
  });

  test("a JWT expires after its hour, and never outlives its key", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const jwt = await tokenFor(a.clientId, k.key);
    t.clock.advance(3599_000);
    assert.equal((await callApi(jwt)).statusCode, 200);
    t.clock.advance(1_000);
    const res = await callApi(jwt);
    assert.equal(res.statusCode, 401);
    assert.equal(res.json().code, "TOKEN_EXPIRED");

    const shortLived = await newKey(a.id, { expiresAt: new Date(t.clock.now() + 600_000).toISOString() });
    const claims = decodeJwt(await tokenFor(a.clientId, shortLived.key));
    assert.equal(claims.exp! - claims.iat!, 600);
  });

  test("forged tokens are INVALID_TOKEN and count towards the IP lockout (RFC 8725)", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const jwt = await tokenFor(a.clientId, k.key);
    const [h, p, s] = jwt.split(".") as [string, string, string];
    const claims = decodeJwt(jwt);
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const header = decodeProtectedHeader(jwt);
    const attacker = await generateKeyPair("EdDSA", { crv: "Ed25519" });
    const forgeries = [
      `${b64({ alg: "none", typ: "at+jwt" })}.${p}.`, // alg none
      `${h}.${b64({ ...claims, scope: "payments.read payments.write payouts.write" })}.${s}`, // tampered claims
      `${b64({ ...header, alg: "HS256" })}.${p}.${s}`, // algorithm switched
      await new SignJWT(claims).setProtectedHeader({ alg: "EdDSA", kid: header.kid!, typ: "at+jwt" }).sign(attacker.privateKey), // someone else's key, our kid
      await new SignJWT({ ...claims, aud: "other" }).setProtectedHeader({ alg: "EdDSA", kid: "unknown", typ: "at+jwt" }).sign(attacker.privateKey),
    ];
    const client = nextIp();
    const left: number[] = [];
    for (const forged of forgeries) {
      const res = await callApi(forged, "/third-parties/payments/1", "GET", client);
      assert.equal(res.statusCode, 401, forged);
      assert.equal(res.json().code, "INVALID_TOKEN");
      left.push(res.json().attemptsLeft);
    }
    assert.deepEqual(left, [4, 3, 2, 1, 0]);
    // Blocked now, even with the genuine token.
    const blocked = await callApi(jwt, "/third-parties/payments/1", "GET", client);
    assert.equal(blocked.statusCode, 403);
    assert.equal(blocked.json().code, "IP_BLOCKED");
    assert.equal(blocked.headers["retry-after"], "900");
  });

  test("signing keys rotate without breaking tokens in flight", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const before = await tokenFor(a.clientId, k.key);
    const rotated = await adminCall("POST", "/v1/signing-keys/rotate", {});
    assert.equal(rotated.status, 201);
    assert.equal(rotated.body.status, "active");
    const afterwards = await tokenFor(a.clientId, k.key);
    assert.equal(decodeProtectedHeader(afterwards).kid, rotated.body.kid);
    assert.notEqual(decodeProtectedHeader(before).kid, rotated.body.kid);
    assert.equal((await callApi(before)).statusCode, 200, "a token of the retired key still works");
    assert.equal((await callApi(afterwards)).statusCode, 200);
    const jwks = (await app.inject({ method: "GET", url: "/.well-known/jwks.json" })).json() as { keys: Array<{ kid: string }> };
    assert.ok(jwks.keys.some((x) => x.kid === decodeProtectedHeader(before).kid));
    assert.ok(jwks.keys.some((x) => x.kid === rotated.body.kid));
    const listed = await adminCall("GET", "/v1/signing-keys");
    assert.ok(listed.body.data.some((x: { status: string; publishedUntil: string | null }) => x.status === "retired" && x.publishedUntil !== null));
    const badAlg = await adminCall("POST", "/v1/signing-keys/rotate", { algorithm: "ES256" });
    assert.equal(badAlg.body.code, "UNKNOWN_ALGORITHM");
  });

  test("changing an application's features changes its keys' scopes at once", async () => {
    const a = await newApp(["payment-api"]);
    const k = await newKey(a.id);
    const jwt = await tokenFor(a.clientId, k.key);
    const patched = await adminCall("PATCH", `/v1/applications/${a.id}`, { features: ["payout-api"] });
    assert.equal(patched.status, 200);
    assert.deepEqual(patched.body.scopes, ["payouts.read", "payouts.write"]);
    assert.deepEqual((await adminCall("GET", `/v1/keys/${k.id}`)).body.scopes, ["payouts.read", "payouts.write"]);
    // The old token carried payment scopes the key no longer holds: refused.
    assert.equal((await callApi(jwt)).statusCode, 403);
    const fresh = await tokenFor(a.clientId, k.key);
    assert.equal((await callApi(fresh, "/third-parties/payouts/1", "POST")).statusCode, 200);
  });

  describe("OAuth 2 client credentials (RFC 6749 §4.4)", () => {
    const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
    const token = (body: string, headers: Record<string, string> = {}, contentType = "application/x-www-form-urlencoded") =>
      app.inject({ method: "POST", url: "/oauth/token", remoteAddress: nextIp(), headers: { "content-type": contentType, ...headers }, payload: body });
    const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString("base64")}`;

    test("HTTP Basic or form credentials → access_token, no-store", async () => {
      const a = await newApp(["payment-api", "payout-api"]);
      const k = await newKey(a.id);
      const viaBasic = await token(form({ grant_type: "client_credentials" }), { authorization: basic(a.clientId, k.key) });
      assert.equal(viaBasic.statusCode, 200, viaBasic.body);
      assert.equal(viaBasic.headers["cache-control"], "no-store");
      assert.equal(viaBasic.headers.pragma, "no-cache");
      const body = viaBasic.json() as { access_token: string; token_type: string; expires_in: number; scope: string };
      assert.equal(body.token_type, "Bearer");
      assert.equal(body.expires_in, 3600);
      assert.equal(body.scope, "payments.read payments.write payouts.read payouts.write");
      assert.equal((await callApi(body.access_token)).statusCode, 200);
      const viaForm = await token(form({ grant_type: "client_credentials", client_id: a.clientId, client_secret: k.key }));
      assert.equal(viaForm.statusCode, 200);
    });

    test("a narrower scope yields a token limited to it", async () => {
      const a = await newApp(["payment-api", "payout-api"]);
      const k = await newKey(a.id);
      const res = await token(form({ grant_type: "client_credentials", scope: "payouts.write" }), { authorization: basic(a.clientId, k.key) });
      const body = res.json() as { access_token: string; scope: string };
      assert.equal(body.scope, "payouts.write");
      assert.equal((await callApi(body.access_token, "/third-parties/payouts/1", "POST")).statusCode, 200);
      const denied = await callApi(body.access_token);
      assert.equal(denied.statusCode, 403);
      assert.deepEqual(denied.json().missingScopes, ["payments.read"]);
      const tooMuch = await token(form({ grant_type: "client_credentials", scope: "payouts.write admin" }), { authorization: basic(a.clientId, k.key) });
      assert.equal(tooMuch.statusCode, 400);
      assert.equal(tooMuch.json().error, "invalid_scope");
    });

    test("errors follow §5.2", async () => {
      const a = await newApp(["payment-api"]);
      const k = await newKey(a.id);
      const wrong = await token(form({ grant_type: "client_credentials" }), { authorization: basic(a.clientId, "SKnotthekey") });
      assert.equal(wrong.statusCode, 401);
      assert.equal(wrong.json().error, "invalid_client");
      assert.match(String(wrong.headers["www-authenticate"]), /^Basic realm="pay"/);
      const grant = await token(form({ grant_type: "password", username: "x", password: "y" }), { authorization: basic(a.clientId, k.key) });
      assert.equal(grant.statusCode, 400);
      assert.equal(grant.json().error, "unsupported_grant_type");
      const noGrant = await token(form({}), { authorization: basic(a.clientId, k.key) });
      assert.equal(noGrant.json().error, "invalid_request");
      const both = await token(form({ grant_type: "client_credentials", client_secret: k.key }), { authorization: basic(a.clientId, k.key) });
      assert.equal(both.json().error, "invalid_request");
      const twice = await token("grant_type=client_credentials&grant_type=client_credentials", { authorization: basic(a.clientId, k.key) });
      assert.equal(twice.json().error, "invalid_request");
      const json = await token(JSON.stringify({ grant_type: "client_credentials" }), { authorization: basic(a.clientId, k.key) }, "application/json");
      assert.equal(json.statusCode, 400);
      assert.equal(json.json().error, "invalid_request");
      const garbage = await token(form({ grant_type: "client_credentials" }), { authorization: "Basic !!!" });
      assert.equal(garbage.statusCode, 401);
      for (const res of [wrong, grant, noGrant, both, twice, json, garbage]) assert.equal(res.headers["cache-control"], "no-store");
    });
  });
});
