/**
 * `/_auth/:api` as Traefik ForwardAuth and Envoy ext_authz (HTTP service) call it, over real
 * HTTP: each request below is shaped as that proxy sends it (docs/forward-auth.md). Traefik
 * always asks with GET and names the original request in X-Forwarded-Method / -Uri / -Host /
 * -Proto / -For, passing the client's own headers too; Envoy asks with the original method at
 * `path_prefix` + the original path. Both hand keygate's answer (status, headers, body) to the
 * client as it is, so a denial must be the real status in the API's style, not nginx's 401/403.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rawRequest, startGateway } from "./gateway-support.js";
import type { RawResponse, RunningGateway } from "./gateway-support.js";

const CLIENT_IP = "203.0.113.45";

describe("forward-auth for Traefik and Envoy", () => {
  let gw: RunningGateway;
  /** A key of the `dz` API (top-up style, X-Access-Token; GET needs read, POST write). */
  const dzKey = async (input: { scopes?: string[]; ipAllowlist?: string[]; rateLimit?: { limit: number; windowSeconds: number } } = {}) =>
    gw.keygate.keys.create({ api: "dz", accountId: gw.accountId, environment: "production", ...input });

  before(async () => {
    gw = await startGateway({
      server: { trustedProxies: ["127.0.0.1/32"] },
      apis: [
        {
          id: "dz",
          keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" },
          scopes: ["read", "write"], defaultScopes: ["read", "write"],
          credentials: [{ type: "header", name: "X-Access-Token" }],
          errorStyle: "topup",
          lockout: { enabled: false },
          routes: [
            { methods: ["GET"], path: "/v3/*", scopes: ["read"] },
            { methods: ["POST"], path: "/v3/*", scopes: ["write"] },
            { methods: ["GET"], path: "/status", public: true },
          ],
        },
        {
          id: "mail",
          keyFormat: { prefix: "ck", alphabet: "hex", length: 40 },
          scopes: ["offers"],
          credentials: [{ type: "bearer" }],
          lockout: { enabled: false },
          routes: [{ methods: ["GET"], path: "/offers", scopes: ["offers"] }],
        },
      ],
    });
  });
  after(async () => {
    await gw?.close();
  });

  describe("Traefik ForwardAuth", () => {
    /** What Traefik sends for a client's `method uri`: always a GET, the original in X-Forwarded-*. */
    const traefik = (api: string, method: string, uri: string, headers: Record<string, string> = {}): Promise<RawResponse> =>
      rawRequest(gw.url, {
        method: "GET",
        path: `/_auth/${api}`,
        headers: {
          ...headers,
          "x-forwarded-method": method,
          "x-forwarded-proto": "https",
          "x-forwarded-host": "api.example.test",
          "x-forwarded-uri": uri,
          "x-forwarded-for": CLIENT_IP,
        },
      });

    test("a valid key gets 200 with the identity and rate-limit headers Traefik copies upstream", async () => {
      const { id, key } = await dzKey({ rateLimit: { limit: 5, windowSeconds: 3600 } });
      const res = await traefik("dz", "GET", "/v3/balance?currency=DZD", { "x-access-token": key });
      assert.equal(res.status, 200);
      assert.equal(res.headers["x-keygate-key-id"], id);
      assert.equal(res.headers["x-keygate-account-id"], gw.accountId);
      assert.equal(res.headers["x-keygate-scopes"], "read write");
      assert.equal(res.headers["x-keygate-environment"], "production");
      assert.match(String(res.headers["x-keygate-request-id"]), /^req_/);
      assert.equal(res.headers["x-ratelimit-limit"], "5");
      assert.equal(res.headers["x-ratelimit-remaining"], "4");
      assert.equal(res.headers["x-keygate-status"], undefined, "no nginx workaround for Traefik");
    });

    test("the route's scopes come from X-Forwarded-Method and -Uri, not from the GET Traefik sends", async () => {
      const { key } = await dzKey({ scopes: ["read"] });
      assert.equal((await traefik("dz", "GET", "/v3/topup", { "x-access-token": key })).status, 200);
      const denied = await traefik("dz", "POST", "/v3/topup", { "x-access-token": key });
      assert.equal(denied.status, 403);
      assert.equal(denied.headers["content-type"], "application/json; charset=utf-8");
      const body = JSON.parse(denied.body) as { success: boolean; error: { code: string; message: string; details: { missingScopes: string[] } }; requestId: string };
      assert.deepEqual(body.error, { code: "INSUFFICIENT_SCOPE", message: "This API key's scope does not allow this operation", details: { missingScopes: ["write"] } });
      assert.equal(body.success, false);
      assert.equal(body.requestId, denied.headers["x-keygate-request-id"] ?? body.requestId);
      assert.equal((await traefik("dz", "POST", "/v3/topup", { "x-access-token": (await dzKey()).key })).status, 200);
    });

    test("denials keep their real status and the API's style: 400 without a token, 404 off the routes", async () => {
      const missing = await traefik("dz", "GET", "/v3/balance");
      assert.equal(missing.status, 400);
      assert.deepEqual(JSON.parse(missing.body).error, { code: "MISSING_ACCESS_TOKEN", message: "Access token is required" });
      const off = await traefik("dz", "GET", "/v2/balance", { "x-access-token": (await dzKey()).key });
      assert.equal(off.status, 404);
      assert.equal(JSON.parse(off.body).error.code, "ROUTE_NOT_FOUND");
      const open = await traefik("dz", "GET", "/status");
      assert.equal(open.status, 200, "a public route needs no key");
    });

    test("a 429 reaches Traefik as a 429 with Retry-After and X-RateLimit-*", async () => {
      const { key } = await dzKey({ rateLimit: { limit: 1, windowSeconds: 3600 } });
      assert.equal((await traefik("dz", "GET", "/v3/balance", { "x-access-token": key })).status, 200);
      const res = await traefik("dz", "GET", "/v3/balance", { "x-access-token": key });
      assert.equal(res.status, 429);
      assert.equal(res.headers["x-ratelimit-limit"], "1");
      assert.equal(res.headers["x-ratelimit-remaining"], "0");
      assert.ok(Number(res.headers["retry-after"]) >= 1);
      assert.equal(JSON.parse(res.body).error.code, "RATE_LIMITED");
    });

    test("the client address is Traefik's X-Forwarded-For, so IP allowlists see the real client", async () => {
      const allowed = await dzKey({ ipAllowlist: [CLIENT_IP] });
      assert.equal((await traefik("dz", "GET", "/v3/balance", { "x-access-token": allowed.key })).status, 200);
      const other = await dzKey({ ipAllowlist: ["198.51.100.23"] });
      const res = await traefik("dz", "GET", "/v3/balance", { "x-access-token": other.key });
      assert.equal(res.status, 403);
      assert.equal(JSON.parse(res.body).error.message,
        `Your IP address ${CLIENT_IP} is not whitelisted for this PRODUCTION API key. Add your IP to the whitelist at https://oneclickdz.com/#/settings`);
    });

    test("a bearer API's denial carries WWW-Authenticate and its problem document", async () => {
      const res = await traefik("mail", "GET", "/offers", { authorization: "Bearer ck_live_nope" });
      assert.equal(res.status, 401);
      assert.equal(res.headers["content-type"], "application/problem+json; charset=utf-8");
      assert.match(String(res.headers["www-authenticate"]), /^Bearer realm="mail", error="invalid_token"/);
      assert.equal(JSON.parse(res.body).code, "MALFORMED_KEY");
    });

    test("a client's own X-Original-* headers, which Traefik passes on, cannot change the request keygate authorizes", async () => {
      const { key } = await dzKey({ scopes: ["read"] });
      // POST /v3/topup with a READ-ONLY key, dressed up as nginx's view of a harmless GET.
      const spoofed = await traefik("dz", "POST", "/v3/topup", { "x-access-token": key, "x-original-method": "GET", "x-original-uri": "/v3/balance" });
      // X-Original-URI also asks for nginx's form of a denial: 403, the real status beside it.
      assert.equal(spoofed.status, 403, spoofed.body);
      assert.equal(spoofed.headers["x-keygate-status"], "400");
      assert.equal(JSON.parse(spoofed.body).error.code, "AMBIGUOUS_ORIGINAL_REQUEST");
      const onlyPath = await traefik("dz", "POST", "/v3/topup", { "x-access-token": key, "x-original-uri": "/status" });
      assert.equal(onlyPath.headers["x-keygate-status"], "400", "nor a public route's path");
      const onlyMethod = await traefik("dz", "POST", "/v3/topup", { "x-access-token": key, "x-original-method": "GET" });
      assert.equal(onlyMethod.status, 400, "nor another method");
      // Agreeing copies change nothing.
      const agreeing = await traefik("dz", "GET", "/v3/balance", { "x-access-token": key, "x-original-method": "GET", "x-original-uri": "/v3/balance" });
      assert.equal(agreeing.status, 200);
    });
  });

  describe("Envoy ext_authz (HTTP service)", () => {
    /** What Envoy sends for a client's `method path`: the same method at path_prefix + path. */
    const envoy = (api: string, method: string, path: string, headers: Record<string, string> = {}): Promise<RawResponse> =>
      rawRequest(gw.url, {
        method,
        path: `/_auth/${api}${path}`,
        headers: { ...headers, "x-forwarded-for": CLIENT_IP, "content-length": "0", "x-envoy-expected-rq-timeout-ms": "250" },
      });

    test("a valid key gets 200 with the headers Envoy's allowed_upstream_headers copy", async () => {
      const { id, key } = await dzKey();
      const res = await envoy("dz", "GET", "/v3/balance?currency=DZD", { "x-access-token": key });
      assert.equal(res.status, 200);
      assert.equal(res.headers["x-keygate-key-id"], id);
      assert.equal(res.headers["x-keygate-scopes"], "read write");
      assert.equal(res.headers["x-keygate-environment"], "production");
      assert.ok(res.headers["x-ratelimit-reset"] === undefined || /^\d+$/.test(String(res.headers["x-ratelimit-reset"])));
    });

    test("the route's scopes come from the method and the path after /_auth/:api", async () => {
      const { key } = await dzKey({ scopes: ["read"] });
      assert.equal((await envoy("dz", "GET", "/v3/orders/42", { "x-access-token": key })).status, 200);
      const denied = await envoy("dz", "POST", "/v3/topup/send", { "x-access-token": key });
      assert.equal(denied.status, 403);
      assert.equal(JSON.parse(denied.body).error.code, "INSUFFICIENT_SCOPE");
      assert.equal((await envoy("dz", "POST", "/v3/topup/send", { "x-access-token": (await dzKey()).key })).status, 200);
    });

    test("denials are the API's own status and body; headers for allowed_client_headers come with them", async () => {
      const missing = await envoy("dz", "GET", "/v3/balance");
      assert.equal(missing.status, 400);
      assert.equal(JSON.parse(missing.body).error.code, "MISSING_ACCESS_TOKEN");
      assert.equal((await envoy("dz", "GET", "/elsewhere", { "x-access-token": (await dzKey()).key })).status, 404);
      const bearer = await envoy("mail", "GET", "/offers");
      assert.equal(bearer.status, 401);
      assert.equal(bearer.headers["www-authenticate"], 'Bearer realm="mail"');
      assert.equal(JSON.parse(bearer.body).code, "MISSING_CREDENTIALS");
      const limited = await dzKey({ rateLimit: { limit: 1, windowSeconds: 3600 } });
      await envoy("dz", "GET", "/v3/balance", { "x-access-token": limited.key });
      const res = await envoy("dz", "GET", "/v3/balance", { "x-access-token": limited.key });
      assert.equal(res.status, 429);
      assert.ok(Number(res.headers["retry-after"]) >= 1);
      assert.equal(res.headers["x-ratelimit-remaining"], "0");
    });

    test("the client address is X-Forwarded-For from the trusted Envoy", async () => {
      const { key } = await dzKey({ ipAllowlist: ["198.51.100.23"] });
      const res = await envoy("dz", "GET", "/v3/balance", { "x-access-token": key });
      assert.equal(res.status, 403);
      assert.match(JSON.parse(res.body).error.message, new RegExp(`^Your IP address ${CLIENT_IP.replace(/\./g, "\\.")} is not whitelisted`));
    });

    test("a forwarded-URI header that names another request than the path cannot widen access", async () => {
      const { key } = await dzKey({ scopes: ["read"] });
      const res = await envoy("dz", "POST", "/v3/topup", { "x-access-token": key, "x-forwarded-uri": "/status", "x-forwarded-method": "GET" });
      assert.equal(res.status, 400, res.body);
      assert.equal(JSON.parse(res.body).error.code, "AMBIGUOUS_ORIGINAL_REQUEST");
      const query = await envoy("dz", "GET", "/v3/balance?x=1", { "x-access-token": key, "x-forwarded-uri": "/v3/balance?y=2" });
      assert.equal(query.status, 200, "the same path with another query string is the same route");
    });
  });
});
