/**
 * Gateway mode's place beside keygate's own endpoints: the config checks made at start
 * (collisions on a shared port, prefixes, routes, upstream URLs), the separate gateway port,
 * and which client address the gateway believes behind proxies.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/load.js";
import { ConfigError } from "../../src/lib/errors.js";
import { createKeygate } from "../../src/keygate.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { buildServer } from "../../src/http/server.js";
import { createMetrics } from "../../src/ops/metrics.js";
import { checkGatewayConfig, reachesInto, RESERVED_PATHS } from "../../src/http/gateway/index.js";
import { ROOT_KEY, rawRequest, startGateway, startUpstream } from "./gateway-support.js";
import type { Echo, RunningGateway, Upstream } from "./gateway-support.js";

const UP = "http://127.0.0.1:9";

/**
 * checkGatewayConfig over a parsed config; returns the ConfigError, or null when accepted.
 * An API without routes gets a prefix of its own (`/p0`), unless the test gives one.
 */
function check(apis: Array<Record<string, unknown>>, server: Record<string, unknown> = {}): ConfigError | null {
  const config = parseConfig({ server, apis: apis.map((a, i) => ({ id: `api${i}`, upstream: UP, ...(a.routes ? {} : { pathPrefix: `/p${i}` }), ...a })) });
  try {
    checkGatewayConfig(config);
    return null;
  } catch (e) {
    assert.ok(e instanceof ConfigError, `a ConfigError, not ${String(e)}`);
    return e;
  }
}

/** Asserts a ConfigError naming the API and the field (in the message and its details). */
function rejects(error: ConfigError | null, api: string, field: string, message?: RegExp): void {
  assert.ok(error, `refused: ${api}.${field}`);
  assert.equal(error.code, "INVALID_CONFIG");
  assert.deepEqual([error.details?.api, error.details?.field], [api, field]);
  assert.ok(error.message.includes(`(${api}).${field}: `), `the message names ${api}.${field}: ${error.message}`);
  assert.match(error.message, /^apis\[\d+\] /);
  if (message) assert.match(error.message, message);
}

describe("checkGatewayConfig", () => {
  describe("on a shared port, nothing may reach into keygate's own paths", () => {
    const collisions: Array<[string, Record<string, unknown>, string, string]> = [
      ["a route under /v1", { routes: [{ path: "/v1/keys" }] }, "routes[0]", "/v1"],
      ["a route that is /v1 itself", { routes: [{ methods: ["GET"], path: "/v1" }] }, "routes[0]", "/v1"],
      ["a :param where /v1 is", { routes: [{ path: "/:version/keys" }] }, "routes[0]", "/v1"],
      ["a wildcard at the root", { routes: [{ path: "/*" }] }, "routes[0]", "/v1"],
      ["/healthz", { routes: [{ methods: ["GET"], path: "/healthz" }] }, "routes[0]", "/healthz"],
      ["/readyz", { routes: [{ path: "/readyz" }] }, "routes[0]", "/readyz"],
      ["/_auth", { routes: [{ path: "/_auth/:api" }] }, "routes[0]", "/_auth"],
      ["/.well-known", { routes: [{ path: "/.well-known/jwks.json" }] }, "routes[0]", "/.well-known"],
      ["/openapi.json", { routes: [{ path: "/openapi.json" }] }, "routes[0]", "/openapi.json"],
      ["/docs", { routes: [{ path: "/docs/*" }] }, "routes[0]", "/docs"],
      ["/secret-scanning", { routes: [{ methods: ["POST"], path: "/secret-scanning/github" }] }, "routes[0]", "/secret-scanning"],
      ["/metrics", { routes: [{ path: "/metrics" }] }, "routes[0]", "/metrics"],
      ["the second of several routes", { routes: [{ path: "/orders" }, { path: "/_auth/x" }] }, "routes[1]", "/_auth"],
    ];
    for (const [what, api, field, reserved] of collisions) {
      test(`${what} is refused, naming the API and ${field}`, () => {
        const e = check([{ id: "shop", ...api }]);
        rejects(e, "shop", field, /collides with keygate's own/);
        assert.equal(e!.details?.reserved, reserved);
        assert.match(e!.message, /server\.gatewayPort/, "the message says how to fix it");
        assert.equal(check([{ id: "shop", ...api }], { gatewayPort: 8081 }), null, "accepted on a gateway port of its own");
      });
    }

    test("a prefix without routes takes every path under it: the root, or /v1, is refused", () => {
      for (const pathPrefix of ["/", "/v1", "/v1/", "/_auth", "/.well-known/"]) {
        const e = check([{ id: "shop", pathPrefix }]);
        rejects(e, "shop", "pathPrefix", /no routes: every path under it/);
        assert.equal(check([{ id: "shop", pathPrefix }], { gatewayPort: 0 }), null);
      }
    });

    test("paths that only look alike are accepted", () => {
      assert.equal(check([{ routes: [{ path: "/v10/keys" }, { path: "/v1x" }, { path: "/healthz2" }, { path: "/orders/v1" }, { path: "/" }, { path: "/api/*" }] }]), null);
      assert.equal(check([{ pathPrefix: "/api" }, { pathPrefix: "/v2" }]), null);
    });

    test("every reserved path is seen by reachesInto, and only its own segments", () => {
      for (const reserved of RESERVED_PATHS) {
        assert.equal(reachesInto(reserved, reserved), true);
        assert.equal(reachesInto(`${reserved}/x/y`, reserved), true);
        assert.equal(reachesInto("/*", reserved), true);
        assert.equal(reachesInto(`${reserved}x`, reserved), false);
      }
      assert.equal(reachesInto("/v1/*", "/v1"), true);
      assert.equal(reachesInto("/:a/*", "/.well-known"), true);
      assert.equal(reachesInto("/x/*", "/v1"), false);
      assert.equal(reachesInto("/*/v1", "/v1"), false, "a * that is not last is a literal segment");
    });

    test("every path keygate serves on its main port is reserved", async () => {
      // Built with every optional endpoint on, and no gateway: what is left is keygate's own.
      const keygate = await createKeygate({
        store: createMemoryStore(),
        config: { cache: { changePollMs: 0 }, secretScanning: { github: { enabled: true } }, apis: [{ id: "plain" }] },
      });
      const app = await buildServer({ keygate, rootKeyHash: "0".repeat(64), metrics: createMetrics() });
      try {
        await app.ready();
        const top = app.printRoutes({ commonPrefix: false }).split("\n").flatMap((line) => /^[├└]── (\/\S*)/.exec(line)?.[1] ?? []);
        assert.ok(top.length >= 8, `read the routes: ${top.join(" ")}`);
        for (const path of top) {
          assert.ok(RESERVED_PATHS.some((r) => reachesInto(path, r)), `${path} is served by keygate but not in RESERVED_PATHS`);
        }
      } finally {
        await app.close();
        await keygate.close();
      }
    });

    test("APIs without an upstream are not the gateway's concern", () => {
      const config = parseConfig({ apis: [{ id: "plain", pathPrefix: "/" }, { id: "other", pathPrefix: "/" }] });
      assert.doesNotThrow(() => checkGatewayConfig(config));
    });
  });

  test("two gateway APIs cannot share a pathPrefix, however it is written", () => {
    rejects(check([{ id: "a", pathPrefix: "/api" }, { id: "b", pathPrefix: "/api/" }]), "b", "pathPrefix", /also the pathPrefix of API a/);
    rejects(check([{ id: "a", routes: [{ path: "/x" }] }, { id: "b", routes: [{ path: "/y" }] }]), "b", "pathPrefix");
    assert.equal(check([{ id: "a", pathPrefix: "/api" }, { id: "b", pathPrefix: "/api/v2" }]), null, "nested prefixes are distinct: the longer wins its paths");
  });

  test("a route outside its API's prefix is refused: it could never be reached", () => {
    rejects(check([{ id: "shop", pathPrefix: "/shop", routes: [{ path: "/shop/orders" }, { path: "/orders" }] }]), "shop", "routes[1]", /\/orders lies outside pathPrefix "\/shop"/);
    rejects(check([{ id: "shop", pathPrefix: "/shop", routes: [{ path: "/shopping" }] }]), "shop", "routes[0]");
    assert.equal(check([{ pathPrefix: "/shop/", routes: [{ path: "/shop" }, { path: "/shop/:id" }, { path: "/shop/*" }] }]), null);
  });

  describe("upstream URLs", () => {
    test("one per environment: each environment needs one, or a default", () => {
      const keyFormat = { environments: ["sandbox", "production"] };
      rejects(check([{ id: "topup", keyFormat, upstream: { sandbox: UP } }]), "topup", "upstream", /no upstream for the key environment\(s\) production/);
      assert.equal(check([{ keyFormat, upstream: { sandbox: UP, production: UP } }]), null);
      assert.equal(check([{ keyFormat, upstream: { sandbox: UP, default: UP } }]), null);
      assert.equal(check([{ keyFormat, upstream: { default: UP } }]), null);
      rejects(check([{ id: "topup", keyFormat, upstream: { sandbox: UP, prod: UP, default: UP } }]), "topup", "upstream.prod", /not one of the API's key environments/);
    });

    test("no credentials, query or fragment in an upstream URL", () => {
      rejects(check([{ id: "a", upstream: "http://user:secret@127.0.0.1:9" }]), "a", "upstream", /credentials/);
      rejects(check([{ id: "a", upstream: "http://127.0.0.1:9/api?token=x" }]), "a", "upstream", /query string/);
      rejects(check([{ id: "a", upstream: "http://127.0.0.1:9/#frag" }]), "a", "upstream", /fragment/);
      rejects(check([{ id: "a", upstream: { live: UP, test: "https://u@sandbox.test" } }]), "a", "upstream.test", /credentials/);
      assert.ok(!check([{ id: "a", upstream: "http://user:secret@127.0.0.1:9" }])!.message.includes("secret"), "the password is not repeated");
      assert.equal(check([{ upstream: "https://api.internal:8443/base/path/" }]), null);
    });
  });

  test("no route may reach another API's introspection or token endpoint, on either port", () => {
    const owner = { id: "owner", upstream: undefined, introspection: { path: "/v3/validate" }, tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] } };
    for (const server of [{}, { gatewayPort: 0 }]) {
      const e = check([owner, { id: "shop", routes: [{ path: "/orders" }, { path: "/v3/*" }] }], server);
      rejects(e, "shop", "routes[1]", /reaches \/v3\/validate, the introspection\.path of API owner/);
      assert.equal(e!.details?.of, "owner");
      rejects(check([owner, { id: "shop", pathPrefix: "/oauth" }], server), "shop", "pathPrefix", /tokens\.endpoints\[0\]\.path of API owner/);
    }
    // An API's own endpoints under its own routes are what keygate answers for it: fine.
    assert.equal(check([{ id: "shop", introspection: { path: "/v3/validate" }, routes: [{ path: "/v3/*" }] }]), null);
  });

  test("server.gatewayPort cannot be server.port", () => {
    const e = check([{ id: "shop" }], { port: 8080, gatewayPort: 8080 });
    assert.ok(e);
    assert.equal(e.details?.field, "server.gatewayPort");
    assert.match(e.message, /^server\.gatewayPort: 8080 is also server\.port/);
    assert.equal(check([{ id: "shop" }], { port: 8080, gatewayPort: 8000 }), null);
    assert.equal(check([{ id: "shop" }], { port: 0, gatewayPort: 0 }), null, "two ports the system chooses");
  });

  test("buildServer refuses a colliding config at start", async () => {
    await assert.rejects(
      startGateway({ apis: [{ id: "shop", upstream: UP, routes: [{ path: "/healthz" }] }] }),
      (e: unknown) => e instanceof ConfigError && e.details?.api === "shop" && e.details?.field === "routes[0]",
    );
  });
});

describe("gateway on its own port (server.gatewayPort)", () => {
  let up: Upstream;
  let gw: RunningGateway;
  before(async () => {
    up = await startUpstream();
    gw = await startGateway({
      server: { gatewayPort: 0 },
      apis: [{ id: "shop", keyFormat: { prefix: "sk" }, lockout: { enabled: false }, upstream: up.url, introspection: { path: "/whoami" } }],
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  test("the two ports are different", () => {
    assert.notEqual(gw.url, gw.gatewayUrl);
  });

  test("the admin API is not reachable on the gateway port: its paths go to the upstream", async () => {
    const admin = await fetch(`${gw.gatewayUrl}/v1/accounts`, { headers: { authorization: `Bearer ${ROOT_KEY}` } });
    assert.equal(admin.status, 401, "the root key is no key of the API");
    assert.equal(((await admin.json()) as { code: string }).code, "MALFORMED_KEY");
    const key = (await gw.key()).key;
    const proxied = await fetch(`${gw.gatewayUrl}/v1/accounts`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(((await proxied.json()) as Echo).path, "/v1/accounts", "the upstream's /v1, not keygate's");
    assert.equal(up.requests().at(-1), "GET /v1/accounts");
    for (const path of ["/healthz", "/openapi.json"]) {
      assert.equal((await fetch(`${gw.gatewayUrl}${path}`)).status, 401, `${path} is the API's`);
    }
  });

  test("the gateway is not reachable on the admin port", async () => {
    const key = (await gw.key()).key;
    const before = up.requestCount();
    const res = await fetch(`${gw.url}/orders`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, "ROUTE_NOT_FOUND");
    assert.equal(up.requestCount(), before);
    const admin = await fetch(`${gw.url}/v1/accounts`, { headers: { authorization: `Bearer ${ROOT_KEY}` } });
    assert.equal(admin.status, 200, "the admin API is where it was");
  });

  test("a URL the router cannot decode is a 400 problem document with a request id", async () => {
    const res = await rawRequest(gw.gatewayUrl, { path: "/orders/%ZZ" });
    assert.equal(res.status, 400);
    assert.equal(res.headers["content-type"], "application/problem+json; charset=utf-8");
    const body = JSON.parse(res.body) as { code: string; requestId: string };
    assert.deepEqual([body.code, body.requestId], ["BAD_REQUEST", res.headers["x-request-id"]]);
  });

  test("the API's own client endpoints (introspection) are served on the gateway port", async () => {
    const key = (await gw.key()).key;
    const res = await fetch(`${gw.gatewayUrl}/whoami`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    assert.equal(up.requests().includes("GET /whoami"), false);
  });
});

describe("the client address behind proxies", () => {
  let up: Upstream;
  const started: RunningGateway[] = [];
  before(async () => { up = await startUpstream(); });
  after(async () => {
    await Promise.all(started.map((g) => g.close()));
    await up?.close();
  });
  const gatewayTrusting = async (trustedProxies: string[]): Promise<RunningGateway> => {
    const gw = await startGateway({
      server: { gatewayPort: 0, trustedProxies },
      apis: [{ id: "shop", keyFormat: { prefix: "sk" }, lockout: { enabled: false }, upstream: up.url, errorStyle: "topup", credentials: [{ type: "header", name: "X-Access-Token" }] }],
    });
    started.push(gw);
    return gw;
  };
  const from = (gw: RunningGateway, key: string, headers: Record<string, string>) =>
    rawRequest(gw.gatewayUrl, { path: "/orders", headers: { "x-access-token": key, ...headers } });

  test("an untrusted peer's X-Forwarded-For gets nobody past an allowlist", async () => {
    const gw = await gatewayTrusting(["10.0.0.0/8"]); // not 127.0.0.1, where the test connects from
    const key = (await gw.key({ environment: "live", ipAllowlist: ["203.0.113.7"] })).key;
    for (const xff of ["203.0.113.7", "203.0.113.7, 10.0.0.1", "10.0.0.1, 203.0.113.7"]) {
      const res = await from(gw, key, { "x-forwarded-for": xff, "x-real-ip": "203.0.113.7", forwarded: "for=203.0.113.7" });
      assert.equal(res.status, 403, `X-Forwarded-For: ${xff}`);
      const body = JSON.parse(res.body) as { error: { code: string; message: string } };
      assert.equal(body.error.code, "IP_NOT_ALLOWED");
      assert.match(body.error.message, /Your IP address 127\.0\.0\.1 is not whitelisted/);
    }
  });

  test("the upstream is told the address keygate believes, not the client's claim", async () => {
    const gw = await gatewayTrusting(["10.0.0.0/8"]);
    const key = (await gw.key()).key;
    const res = await from(gw, key, { "x-forwarded-for": "203.0.113.7", "x-forwarded-host": "evil.test", "x-forwarded-proto": "https", "x-real-ip": "203.0.113.7", forwarded: "for=203.0.113.7" });
    const echo = JSON.parse(res.body) as Echo;
    assert.equal(echo.headers["x-forwarded-for"], "127.0.0.1");
    assert.equal(echo.headers["x-forwarded-proto"], "http");
    assert.match(String(echo.headers["x-forwarded-host"]), /^127\.0\.0\.1:\d+$/);
    assert.equal(echo.headers["x-real-ip"], undefined);
    assert.equal(echo.headers.forwarded, undefined);
  });

  test("through trusted hops, the first untrusted address is the client", async () => {
    const gw = await gatewayTrusting(["127.0.0.1/32", "10.0.0.0/8"]);
    const key = (await gw.key({ environment: "live", ipAllowlist: ["203.0.113.7"] })).key;
    const ok = await from(gw, key, { "x-forwarded-for": "203.0.113.7, 10.1.2.3", "x-forwarded-proto": "https", "x-forwarded-host": "api.example.test" });
    assert.equal(ok.status, 200, ok.body);
    const echo = JSON.parse(ok.body) as Echo;
    assert.equal(echo.headers["x-forwarded-for"], "203.0.113.7, 10.1.2.3, 127.0.0.1");
    assert.equal(echo.headers["x-forwarded-proto"], "https");
    assert.equal(echo.headers["x-forwarded-host"], "api.example.test");

    // The client itself wrote 203.0.113.7 in front of its real address, which a trusted proxy appended.
    const spoofed = await from(gw, key, { "x-forwarded-for": "203.0.113.7, 198.51.100.9, 10.1.2.3" });
    assert.equal(spoofed.status, 403);
    assert.match((JSON.parse(spoofed.body) as { error: { message: string } }).error.message, /198\.51\.100\.9/);
  });

  test("forwarded for the upstream: only the trusted part of the chain", async () => {
    const gw = await gatewayTrusting(["127.0.0.1/32"]);
    const key = (await gw.key()).key;
    const res = await from(gw, key, { "x-forwarded-for": "203.0.113.7, 198.51.100.9" });
    const echo = JSON.parse(res.body) as Echo;
    assert.equal(echo.headers["x-forwarded-for"], "198.51.100.9, 127.0.0.1", "the forged 203.0.113.7 is not passed on");
  });
});
