/**
 * The package's subpath exports, as an installed copy resolves them: keygate/client and the
 * three middleware entry points load from the build (dist/) and export their factories,
 * without loading any framework. Run after `npm run build` (npm test does).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const DIST = fileURLToPath(new URL("../../dist/", import.meta.url));
const built = existsSync(`${DIST}client/index.js`) && existsSync(`${DIST}middleware/express/index.js`);

test("keygate/client, keygate/express, keygate/fastify and keygate/hono resolve to the build and export their factories", { skip: built ? false : "dist/ is not built: run npm run build" }, async () => {
  // A computed specifier: resolved at run time by Node through package.json, not by tsc.
  const load = (subpath: string): Promise<Record<string, unknown>> => import(`keygate/${subpath}`);
  const client = await load("client");
  assert.equal(typeof client.createKeygateClient, "function");
  assert.equal(typeof client.KeygateApiError, "function");
  for (const framework of ["express", "fastify", "hono"] as const) {
    const resolved = fileURLToPath(import.meta.resolve(`keygate/${framework}`));
    assert.equal(resolved, `${DIST}middleware/${framework}/index.js`);
    const m = await load(framework);
    assert.equal(typeof m.keygateAuth, "function", framework);
    assert.equal(typeof m.requireScopes, "function", framework);
  }
});

test("the middleware's built files import no framework at run time", { skip: built ? false : "dist/ is not built" }, async () => {
  const { readFileSync } = await import("node:fs");
  for (const file of ["middleware/core.js", "middleware/remote.js", "middleware/express/index.js", "middleware/fastify/index.js", "middleware/hono/index.js"]) {
    const source = readFileSync(`${DIST}${file}`, "utf8");
    assert.doesNotMatch(source, /from\s+["'](express|fastify|hono)(\/[^"']*)?["']/, file);
  }
});
