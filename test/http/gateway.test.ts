/**
 * Gateway mode over real HTTP: keygate in-process on 127.0.0.1 in front of real upstreams.
 * What reaches the upstream (method, path, query, body, identity, no credential), routes and
 * their scopes, public routes, rate-limit headers and request ids. Upstream failures and
 * streaming: gateway-upstream.test.ts; config checks, ports and proxies: gateway-config.test.ts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rawRequest, startGateway, startUpstream } from "./gateway-support.js";
import type { Echo, RunningGateway, Upstream } from "./gateway-support.js";

/** A problem document (RFC 9457) as keygate writes it. */
interface Problem {
  status: number;
  code: string;
  requestId: string;
  missingScopes?: string[];
}

describe("gateway: what reaches the upstream, and what does not", () => {
  let main: Upstream;
  let other: Upstream;
  let gw: RunningGateway;

  before(async () => {
    main = await startUpstream("main");
    other = await startUpstream("other");
    gw = await startGateway({
      server: { bodyLimitBytes: 64 * 1024 },
      apis: [
        {
          id: "shop", keyFormat: { prefix: "sk" }, lockout: { enabled: false },
          scopes: ["orders:read", "orders:write", "bulk:emails", "bulk:phones", "reports:read", "admin"],
          rateLimit: { limit: 1000, windowSeconds: 3600 },
          rateLimitHeaders: { xRateLimit: true, ietf: true },
          upstream: main.url,
          routes: [
            { methods: ["GET"], path: "/orders", scopes: ["orders:read"] },
            { methods: ["GET"], path: "/orders/:id", scopes: ["orders:read"] },
            { methods: ["POST"], path: "/orders", scopes: ["orders:write"] },
            { methods: ["PUT", "PATCH", "DELETE"], path: "/orders/:id", scopes: ["orders:write"] },
            { methods: ["POST"], path: "/bulk", scopeFromBody: { field: "type", map: { emails: "bulk:emails", phones: "bulk:phones" } } },
            { methods: ["GET"], path: "/reports", anyScopes: ["reports:read", "admin"] },
            { path: "/public/*", public: true },
            { path: "/status/*" },
          ],
        },
        {
          // No routes: everything under the prefix, to an upstream mounted at /mount.
          id: "legacy", keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" }, lockout: { enabled: false },
          credentials: [{ type: "header", name: "X-Access-Token" }], errorStyle: "topup",
          rateLimit: { limit: 1000, windowSeconds: 3600 },
          upstream: `${main.url}/mount/`, pathPrefix: "/legacy",
        },
        {
          id: "airtime", keyFormat: { prefix: "ce" }, lockout: { enabled: false },
          credentials: [{ type: "identity", identityHeader: "X-Click-Airtime-Email", secretHeader: "X-Click-Airtime-Token" }],
          errorStyle: "airtime-v2", scopes: ["topup"], defaultScopes: ["topup"],
          upstream: { live: main.url, test: other.url }, pathPrefix: "/airtime",
          routes: [{ methods: ["POST"], path: "/airtime/topup", scopes: ["topup"] }, { methods: ["GET", "POST"], path: "/airtime/*" }],
        },
        {
          id: "topup", keyFormat: { environments: ["production", "sandbox", "staging"], environmentInKey: false, alphabet: "uuid" }, lockout: { enabled: false },
          credentials: [{ type: "header", name: "X-Access-Token" }], errorStyle: "topup",
          upstream: { sandbox: other.url, default: main.url }, pathPrefix: "/topup",
          routes: [{ path: "/topup/ping/*", public: true }, { methods: ["GET"], path: "/topup/*" }],
        },
      ],
    });
  });
  after(async () => {
    await gw?.close();
    await main?.close();
    await other?.close();
  });

  const call = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${gw.gatewayUrl}${path}`, { ...init, signal: AbortSignal.timeout(5000) });
  const bearer = (key: string, extra: Record<string, string> = {}): Record<string, string> => ({ authorization: `Bearer ${key}`, ...extra });
  const echoOf = async (res: Response): Promise<Echo> => {
    assert.equal(res.status, 200, `expected the upstream's 200, got ${res.status}: ${await res.clone().text()}`);
    return (await res.json()) as Echo;
  };
  const keyOf = (api: string, input: Record<string, unknown> = {}) => gw.keygate.keys.create({ api, accountId: gw.accountId, ...input });

  describe("forwarding", () => {
    test("method, path, query string and body reach the upstream unchanged", async () => {
      const k = await gw.key({ scopes: ["orders:read", "orders:write"] });
      const body = JSON.stringify({ item: "ünïcode ✓", qty: 3 });
      const echo = await echoOf(await call("/orders?page=2&q=a%20b&q=c", { method: "POST", headers: bearer(k.key, { "content-type": "application/json; charset=utf-8", "x-custom": "kept" }), body }));
      assert.equal(echo.upstream, "main");
      assert.equal(echo.method, "POST");
      assert.equal(echo.path, "/orders?page=2&q=a%20b&q=c");
      assert.equal(echo.body, body);
      assert.equal(echo.headers["content-type"], "application/json; charset=utf-8");
      assert.equal(echo.headers["content-length"], String(Buffer.byteLength(body)));
      assert.equal(echo.headers["x-custom"], "kept");

      for (const method of ["PUT", "PATCH", "DELETE"]) {
        const e = await echoOf(await call("/orders/42?x=1", { method, headers: bearer(k.key, { "content-type": "text/plain" }), body: `${method} body` }));
        assert.deepEqual([e.method, e.path, e.body], [method, "/orders/42?x=1", `${method} body`]);
      }
      const head = await call("/orders/42", { method: "HEAD", headers: bearer(k.key) });
      assert.equal(head.status, 200, "HEAD is allowed where GET is");
      assert.equal(main.requests().at(-1), "HEAD /orders/42");
    });

    test("an upstream URL with a path is prepended; the API's prefix is kept", async () => {
      const k = await keyOf("legacy", { environment: "production" });
      const echo = await echoOf(await call("/legacy/v3/balance?currency=DZD", { headers: { "x-access-token": k.key } }));
      assert.equal(echo.path, "/mount/legacy/v3/balance?currency=DZD");
      const root = await echoOf(await call("/legacy", { headers: { "x-access-token": k.key } }));
      assert.equal(root.path, "/mount/legacy");
    });

    test("the credential is stripped: bearer, a named header, an identity pair", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      const b = await echoOf(await call("/orders", { headers: bearer(k.key, { "x-access-token": "not ours: kept" }) }));
      assert.equal(b.headers.authorization, undefined);
      assert.equal(b.headers["x-access-token"], "not ours: kept", "only the API's own credential fields are removed");

      const t = await keyOf("legacy", { environment: "production" });
      const h = await echoOf(await call("/legacy/x", { headers: { "X-Access-Token": t.key, authorization: "Basic dXBzdHJlYW06b3du" } }));
      assert.equal(h.headers["x-access-token"], undefined);
      assert.equal(h.headers.authorization, "Basic dXBzdHJlYW06b3du", "an API without bearer keeps Authorization for the upstream");

      const a = await keyOf("airtime");
      const i = await echoOf(await call("/airtime/balance", { headers: { "X-Click-Airtime-Email": "DEV@acme.test", "X-Click-Airtime-Token": a.key } }));
      assert.equal(i.headers["x-click-airtime-email"], undefined);
      assert.equal(i.headers["x-click-airtime-token"], undefined);
      assert.ok(!JSON.stringify(i).includes(a.key), "the secret appears nowhere upstream");
    });

    test("identity headers: key, account, application, scopes, environment, request id", async () => {
      const app = await gw.keygate.applications.create({ accountId: gw.accountId, api: "shop", name: "Checkout" });
      const k = await gw.key({ scopes: ["orders:read", "admin"], applicationId: app.id, environment: "test" });
      const res = await call("/orders", { headers: bearer(k.key) });
      const echo = await echoOf(res);
      const rid = res.headers.get("x-request-id");
      assert.match(rid ?? "", /^req_/);
      assert.deepEqual(
        Object.fromEntries(Object.entries(echo.headers).filter(([n]) => n.startsWith("x-keygate-"))),
        {
          "x-keygate-key-id": k.id,
          "x-keygate-account-id": gw.accountId,
          "x-keygate-application-id": app.id,
          "x-keygate-scopes": "orders:read admin",
          "x-keygate-environment": "test",
          "x-keygate-request-id": rid,
        },
      );
      assert.equal(echo.headers["x-request-id"], rid);

      const plain = await echoOf(await call("/orders", { headers: bearer((await gw.key({ scopes: ["orders:read"] })).key) }));
      assert.equal(plain.headers["x-keygate-application-id"], undefined, "no application, no header");
      assert.equal(plain.headers["x-keygate-environment"], "live");
    });

    test("scopes a header cannot carry as they are are percent-encoded, one token each", async () => {
      // The legacy API declares no scopes, so any string is one.
      const k = await keyOf("legacy", { environment: "production", scopes: ["orders:read", "two words", "lecture✓", "données", "line\nbreak", "100%"] });
      const echo = await echoOf(await call("/legacy/x", { headers: { "x-access-token": k.key } }));
      assert.equal(echo.headers["x-keygate-scopes"], "orders:read two%20words lecture%E2%9C%93 donn%C3%A9es line%0Abreak 100%25");
      assert.deepEqual(String(echo.headers["x-keygate-scopes"]).split(" ").map(decodeURIComponent), ["orders:read", "two words", "lecture✓", "données", "line\nbreak", "100%"]);
    });

    test("the client's own x-keygate-* headers never reach the upstream", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      const spoofed = {
        "x-keygate-key-id": "key_forged", "X-Keygate-Account-Id": "acc_forged", "x-keygate-application-id": "app_forged",
        "x-keygate-scopes": "admin", "x-keygate-environment": "live", "x-keygate-request-id": "forged", "x-keygate-anything": "forged",
      };
      const echo = await echoOf(await call("/orders", { headers: bearer(k.key, spoofed) }));
      assert.equal(echo.headers["x-keygate-key-id"], k.id);
      assert.equal(echo.headers["x-keygate-account-id"], gw.accountId);
      assert.equal(echo.headers["x-keygate-application-id"], undefined);
      assert.equal(echo.headers["x-keygate-scopes"], "orders:read");
      assert.equal(echo.headers["x-keygate-anything"], undefined);
      assert.notEqual(echo.headers["x-keygate-request-id"], "forged");

      const pub = await echoOf(await call("/public/docs", { headers: spoofed }));
      assert.deepEqual(Object.keys(pub.headers).filter((n) => n.startsWith("x-keygate-")), ["x-keygate-request-id"]);
      assert.notEqual(pub.headers["x-keygate-request-id"], "forged");
    });
  });

  describe("upstream per environment", () => {
    test("each key environment reaches its own upstream", async () => {
      const live = await keyOf("airtime", { environment: "live" });
      const sandbox = await keyOf("airtime", { environment: "test" });
      const as = (key: string) => call("/airtime/balance", { headers: { "x-click-airtime-email": "dev@acme.test", "x-click-airtime-token": key } });
      assert.equal((await echoOf(await as(live.key))).upstream, "main");
      assert.equal((await echoOf(await as(sandbox.key))).upstream, "other");
    });

    test("environments without an entry of their own go to default", async () => {
      const to = async (environment: string) => {
        const k = await keyOf("topup", { environment });
        const echo = await echoOf(await call("/topup/balance", { headers: { "x-access-token": k.key } }));
        return [echo.upstream, echo.headers["x-keygate-environment"]];
      };
      assert.deepEqual(await to("sandbox"), ["other", "sandbox"]);
      assert.deepEqual(await to("production"), ["main", "production"]);
      assert.deepEqual(await to("staging"), ["main", "staging"]);
    });

    test("a public route, with no key and so no environment, goes to default", async () => {
      const echo = await echoOf(await call("/topup/ping/now"));
      assert.equal(echo.upstream, "main");
    });
  });

  describe("routes and scopes", () => {
    test("a key without a route's scope gets 403 INSUFFICIENT_SCOPE naming what it lacks; the upstream is not called", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      const before = main.requestCount();
      const res = await call("/orders", { method: "POST", headers: bearer(k.key, { "content-type": "application/json" }), body: "{}" });
      assert.equal(res.status, 403);
      assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
      assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="shop", error="insufficient_scope"/);
      const body = (await res.json()) as Problem;
      assert.deepEqual([body.code, body.missingScopes, body.requestId], ["INSUFFICIENT_SCOPE", ["orders:write"], res.headers.get("x-request-id")]);
      assert.equal(main.requestCount(), before);
      assert.equal((await call("/orders/7", { method: "DELETE", headers: bearer(k.key) })).status, 403);
      assert.equal((await call("/orders/7", { headers: bearer(k.key) })).status, 200);
    });

    test("anyScopes: one of them is enough; with none, all of them are named", async () => {
      const admin = await gw.key({ scopes: ["admin"] });
      const reader = await gw.key({ scopes: ["reports:read"] });
      const neither = await gw.key({ scopes: ["orders:read"] });
      assert.equal((await call("/reports", { headers: bearer(admin.key) })).status, 200);
      assert.equal((await call("/reports", { headers: bearer(reader.key) })).status, 200);
      const res = await call("/reports", { headers: bearer(neither.key) });
      assert.equal(res.status, 403);
      assert.deepEqual(((await res.json()) as Problem).missingScopes, ["reports:read", "admin"]);
    });

    test("denials are in the API's error style: airtime-v2", async () => {
      const k = await keyOf("airtime", { scopes: [] });
      const as = (email: string) => ({ "x-click-airtime-email": email, "x-click-airtime-token": k.key });
      const scope = await call("/airtime/topup", { method: "POST", headers: as("dev@acme.test") });
      assert.equal(scope.status, 403);
      const body = (await scope.json()) as { success: boolean; error: { code: string }; requestId: string };
      assert.deepEqual([body.success, body.error.code, body.requestId], [false, "INSUFFICIENT_PERMISSIONS", scope.headers.get("x-request-id")]);
      assert.equal(scope.headers.get("www-authenticate"), null, "not a bearer API");

      const stranger = await call("/airtime/balance", { headers: as("someone@else.test") });
      assert.equal(stranger.status, 401);
      assert.equal(((await stranger.json()) as { error: { code: string } }).error.code, "INVALID_API_KEY");
    });

    test("an unmatched route is 404 ROUTE_NOT_FOUND in the API's style, before any key is looked at", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      const before = main.requestCount();
      const res = await call("/nowhere", { headers: bearer(k.key) });
      assert.equal(res.status, 404);
      assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
      assert.equal(((await res.json()) as Problem).code, "ROUTE_NOT_FOUND");
      assert.equal((await call("/bulk", { headers: bearer(k.key) })).status, 404, "a route's path with another method is no match");
      assert.equal((await call("/orders/7/items", { headers: bearer(k.key) })).status, 404, ":id is one segment");

      const v2 = await call("/airtime", { method: "DELETE" });
      assert.equal(v2.status, 404);
      const body = (await v2.json()) as { success: boolean; error: { code: string }; requestId: string };
      assert.deepEqual([body.success, body.error.code, body.requestId], [false, "ROUTE_NOT_FOUND", v2.headers.get("x-request-id")]);
      assert.equal(main.requestCount(), before);
    });

    test("a path that climbs out of a public route with .. is refused, never forwarded", async () => {
      const before = main.requestCount();
      for (const path of ["/public/../orders", "/public/%2e%2e/orders", "/public/..%2Forders", "/public/%2E%2E%2Forders"]) {
        const res = await rawRequest(gw.gatewayUrl, { path });
        assert.equal(res.status, 400, path);
        assert.equal((JSON.parse(res.body) as Problem).code, "BAD_REQUEST");
      }
      assert.equal(main.requestCount(), before);
    });

    test("a public route needs no key and carries no rate-limit headers", async () => {
      const res = await call("/public/status?verbose=1");
      const echo = await echoOf(res);
      assert.equal(echo.path, "/public/status?verbose=1");
      assert.equal(res.headers.get("x-ratelimit-limit"), null);
      assert.equal((await call("/orders")).status, 401, "the routes beside it still need one");
    });
  });

  describe("scopeFromBody", () => {
    const bulk = (key: string, body: string | ReadableStream<Uint8Array>, contentType = "application/json") =>
      call("/bulk", { method: "POST", headers: bearer(key, { "content-type": contentType }), body, ...(typeof body === "string" ? {} : { duplex: "half" }) } as RequestInit);

    test("the body field chooses the scope, and the body reaches the upstream byte for byte", async () => {
      const emails = await gw.key({ scopes: ["bulk:emails"] });
      const body = JSON.stringify({ type: "emails", items: ["a@example.test", "b@example.test"] });
      assert.equal((await echoOf(await bulk(emails.key, body))).body, body);
      const phones = await bulk(emails.key, JSON.stringify({ type: "phones", items: [] }));
      assert.equal(phones.status, 403);
      assert.deepEqual(((await phones.json()) as Problem).missingScopes, ["bulk:phones"]);
    });

    test("an unknown value, a missing field or a body that is not JSON needs every scope of the map", async () => {
      const emails = await gw.key({ scopes: ["bulk:emails"] });
      const both = await gw.key({ scopes: ["bulk:emails", "bulk:phones"] });
      for (const [body, type] of [['{"type":"faxes"}', "application/json"], ['{"kind":"emails"}', "application/json"], ['{"type":["emails"]}', "application/json"], ["type=emails", "application/x-www-form-urlencoded"], ['{"type":"emails"', "application/json"], ["", "application/json"]] as const) {
        const denied = await bulk(emails.key, body, type);
        assert.equal(denied.status, 403, `${body} with only bulk:emails`);
        assert.deepEqual(((await denied.json()) as Problem).missingScopes, ["bulk:phones"]);
        const echo = await echoOf(await bulk(both.key, body, type));
        assert.equal(echo.body, body, "forwarded as sent");
        assert.equal(echo.headers["content-type"], type);
      }
    });

    test("a body over server.bodyLimitBytes is 413 BODY_TOO_LARGE, declared or streamed", async () => {
      const k = await gw.key({ scopes: ["bulk:emails", "bulk:phones"] });
      const before = main.requestCount();
      const big = JSON.stringify({ type: "emails", pad: "x".repeat(64 * 1024) });
      const declared = await bulk(k.key, big);
      assert.equal(declared.status, 413);
      const problem = (await declared.json()) as Problem;
      assert.deepEqual([problem.code, problem.requestId], ["BODY_TOO_LARGE", declared.headers.get("x-request-id")]);

      // No Content-Length: keygate counts what arrives and stops at the limit.
      const chunk = new TextEncoder().encode("x".repeat(16 * 1024));
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ < 8) controller.enqueue(chunk); else controller.close();
        },
      });
      const streamed = await bulk(k.key, stream);
      assert.equal(streamed.status, 413);
      assert.equal(((await streamed.json()) as Problem).code, "BODY_TOO_LARGE");
      assert.equal(main.requestCount(), before, "nothing reached the upstream");

      const fits = JSON.stringify({ type: "emails", pad: "x".repeat(60 * 1024) });
      assert.equal((await echoOf(await bulk(k.key, fits))).body, fits, "a body just under the limit passes");
    });
  });

  describe("rate limits", () => {
    test("X-RateLimit-* (epoch seconds) and the IETF fields on success", async () => {
      const k = await gw.key({ scopes: ["orders:read"], rateLimit: { limit: 5, windowSeconds: 60 } });
      const res = await call("/orders", { headers: bearer(k.key) });
      assert.equal(res.status, 200);
      const reset = Number(res.headers.get("x-ratelimit-reset"));
      const now = Date.now() / 1000;
      assert.equal(res.headers.get("x-ratelimit-limit"), "5");
      assert.equal(res.headers.get("x-ratelimit-remaining"), "4");
      assert.ok(Number.isInteger(reset) && reset % 60 === 0 && reset > now && reset <= now + 60, `reset ${reset} is the end of this minute in epoch seconds`);
      assert.equal(res.headers.get("ratelimit-policy"), '"default";q=5;w=60');
      const m = /^"default";r=4;t=(\d+)$/.exec(res.headers.get("ratelimit") ?? "");
      assert.ok(m && Number(m[1]) <= 60 && Math.abs(Number(m[1]) - (reset - now)) <= 2, `RateLimit: ${res.headers.get("ratelimit")}`);
      assert.equal((await call("/orders", { headers: bearer(k.key) })).headers.get("x-ratelimit-remaining"), "3");
    });

    test("an API without the IETF fields sends only X-RateLimit-*", async () => {
      const k = await keyOf("legacy", { environment: "production" });
      const res = await call("/legacy/x", { headers: { "x-access-token": k.key } });
      assert.equal(res.headers.get("x-ratelimit-limit"), "1000");
      assert.equal(res.headers.get("ratelimit"), null);
      assert.equal(res.headers.get("ratelimit-policy"), null);
    });

    test("the upstream's own rate-limit headers are replaced by keygate's", async () => {
      const k = await gw.key({ scopes: ["orders:read"], rateLimit: { limit: 5, windowSeconds: 60 } });
      // /status/:n answers X-RateLimit-Limit: 999 and X-RateLimit-Remaining: 998 of its own.
      const a = await call("/status/200", { headers: bearer(k.key) });
      const b = await call("/status/201", { headers: bearer(k.key) });
      assert.deepEqual([a.status, b.status], [200, 201]);
      assert.deepEqual([a.headers.get("x-ratelimit-limit"), a.headers.get("x-ratelimit-remaining")], ["5", "4"]);
      assert.deepEqual([b.headers.get("x-ratelimit-limit"), b.headers.get("x-ratelimit-remaining")], ["5", "3"]);
    });

    test("past the limit: 429 with Retry-After in whole seconds and the headers, and the upstream is never reached", async () => {
      const k = await gw.key({ scopes: ["orders:read", "orders:write"], rateLimit: { limit: 2, windowSeconds: 60 } });
      assert.equal((await call("/orders", { headers: bearer(k.key) })).status, 200);
      assert.equal((await call("/orders", { headers: bearer(k.key) })).status, 200);
      const before = main.requestCount();
      for (let i = 0; i < 3; i++) {
        const res = await call("/orders", { method: "POST", headers: bearer(k.key, { "content-type": "application/json" }), body: '{"n":1}' });
        assert.equal(res.status, 429);
        const retry = res.headers.get("retry-after") ?? "";
        assert.match(retry, /^\d+$/);
        assert.ok(Number(retry) >= 1 && Number(retry) <= 60);
        assert.equal(res.headers.get("x-ratelimit-limit"), "2");
        assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
        assert.match(res.headers.get("x-ratelimit-reset") ?? "", /^\d{10}$/);
        assert.match(res.headers.get("ratelimit") ?? "", /^"default";r=0;t=\d+$/);
        const body = (await res.json()) as Problem;
        assert.deepEqual([body.status, body.code], [429, "RATE_LIMITED"]);
      }
      assert.equal(main.requestCount(), before, "no request past the limit reached the upstream");
    });

    test("the top-up style 429 carries the same headers", async () => {
      const k = await keyOf("legacy", { environment: "production", rateLimit: { limit: 1, windowSeconds: 3600 } });
      assert.equal((await call("/legacy/a", { headers: { "x-access-token": k.key } })).status, 200);
      const res = await call("/legacy/a", { headers: { "x-access-token": k.key } });
      assert.equal(res.status, 429);
      assert.match(res.headers.get("retry-after") ?? "", /^\d+$/);
      assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
      const body = (await res.json()) as { success: boolean; error: { code: string }; requestId: string };
      assert.deepEqual([body.success, body.error.code, body.requestId], [false, "RATE_LIMITED", res.headers.get("x-request-id")]);
    });
  });

  describe("request ids", () => {
    test("the client's valid X-Request-Id is kept, end to end", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      const res = await call("/orders", { headers: bearer(k.key, { "x-request-id": "client-trace.42:abc" }) });
      const echo = await echoOf(res);
      assert.equal(res.headers.get("x-request-id"), "client-trace.42:abc");
      assert.equal(echo.headers["x-request-id"], "client-trace.42:abc");
      assert.equal(echo.headers["x-keygate-request-id"], "client-trace.42:abc");
    });

    test("an invalid one is replaced, and keygate's id wins over the upstream's", async () => {
      const k = await gw.key({ scopes: ["orders:read"] });
      for (const given of ["has spaces", "x".repeat(129), "semi;colon"]) {
        const res = await call("/orders", { headers: bearer(k.key, { "x-request-id": given }) });
        const echo = await echoOf(res);
        const rid = res.headers.get("x-request-id")!;
        assert.match(rid, /^req_[A-Za-z0-9_-]+$/);
        assert.equal(echo.headers["x-request-id"], rid);
      }
      // The echo upstream answers X-Request-Id: upstream-chose-this on every response.
      const res = await call("/orders", { headers: bearer(k.key) });
      assert.equal(res.headers.get("x-upstream"), "main", "the upstream's other headers pass");
      assert.notEqual(res.headers.get("x-request-id"), "upstream-chose-this");
    });

    test("denials carry the request id too", async () => {
      const res = await call("/orders", { headers: { authorization: "Bearer sk_live_wrong", "x-request-id": "denied-1" } });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get("x-request-id"), "denied-1");
      assert.equal(((await res.json()) as Problem).requestId, "denied-1");
    });
  });
});
