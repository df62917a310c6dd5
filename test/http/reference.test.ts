/**
 * The interactive API reference at /docs: the page, its bundled scripts and styles (no CDN),
 * the document it renders (/openapi.json), and that none of it leaks into the OpenAPI paths.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createTestKeygate } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const ROOT = "reference-test-root-key-0123456789abcdefgh";

describe("API reference page", () => {
  let t: TestKeygate;
  let app: FastifyInstance;

  before(async () => {
    t = await createTestKeygate({ apis: [{ id: "demo", keyFormat: { prefix: "sk", checksum: true } }] });
    app = await buildServer({ keygate: t.keygate, rootKeyHash: createHash("sha256").update(ROOT).digest("hex") });
  });
  after(async () => {
    await app?.close();
    await t?.keygate.close();
  });

  /** The page's own assets: every script and stylesheet it links, resolved against the page's path. */
  const assetsOf = (html: string, page = "/docs"): string[] =>
    [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => new URL(m[1]!, `http://keygate.test${page}`).pathname);

  test("GET /docs serves the page without a root key, and it loads only same-origin assets", async () => {
    const res = await app.inject({ method: "GET", url: "/docs" });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers["content-type"]), /^text\/html/);
    assert.match(res.body, /<title>keygate API reference<\/title>/);
    assert.doesNotMatch(res.body, /https?:\/\//, "no asset comes from a CDN");
    const csp = String(res.headers["content-security-policy"]);
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /https:|validator\.swagger\.io|upgrade-insecure-requests/);
    const assets = assetsOf(res.body);
    for (const name of ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-initializer.js", "swagger-ui.css"]) {
      assert.ok(assets.includes(`/docs/static/${name}`), `${name} is linked from /docs/static`);
    }
  });

  test("every asset the page links is served", async () => {
    const page = await app.inject({ method: "GET", url: "/docs" });
    for (const path of assetsOf(page.body)) {
      const res = await app.inject({ method: "GET", url: path });
      assert.equal(res.statusCode, 200, path);
      assert.ok(res.rawPayload.length > 0, `${path} is not empty`);
      if (path.endsWith(".js")) assert.match(String(res.headers["content-type"]), /javascript/, path);
      if (path.endsWith(".css")) assert.match(String(res.headers["content-type"]), /text\/css/, path);
    }
    const bundle = await app.inject({ method: "GET", url: "/docs/static/swagger-ui-bundle.js" });
    assert.ok(bundle.rawPayload.length > 500_000, "the whole Swagger UI bundle is served from the package");
  });

  test("the page renders /openapi.json, which documents the admin API", async () => {
    const init = await app.inject({ method: "GET", url: "/docs/static/swagger-initializer.js" });
    assert.equal(init.statusCode, 200);
    assert.match(init.body, /"url":"\/openapi\.json"/);
    assert.match(init.body, /"persistAuthorization":false/);
    assert.match(init.body, /validatorUrl: null/);
    const doc = await app.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(doc.statusCode, 200);
    const spec = doc.json() as { openapi: string; paths: Record<string, unknown> };
    assert.equal(spec.openapi, "3.1.0");
    assert.ok(spec.paths["/v1/keys"], "the admin API is documented");
    assert.ok(spec.paths["/v1/apis/{id}/secret-pattern"], "the secret-pattern route is documented");
    assert.ok(!Object.keys(spec.paths).some((p) => p.startsWith("/docs")), "the reference's own routes stay out of the document");
  });

  test("a trailing slash serves the same page with relative asset paths", async () => {
    const res = await app.inject({ method: "GET", url: "/docs/" });
    assert.equal(res.statusCode, 200);
    const assets = assetsOf(res.body, "/docs/");
    assert.ok(assets.includes("/docs/static/swagger-ui-bundle.js"));
    for (const path of assets) assert.equal((await app.inject({ method: "GET", url: path })).statusCode, 200, path);
  });
});
