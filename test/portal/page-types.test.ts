/**
 * The portal's page is plain JavaScript (no build step), type-checked from its JSDoc under
 * `strict` with the DOM's types: src/portal/static/tsconfig.json, run here so `npm test`
 * catches a page that would break in the browser.
 */
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import assert from "node:assert/strict";
import ts from "typescript";

test("the page's scripts type-check against the DOM", () => {
  const dir = fileURLToPath(new URL("../../src/portal/static/", import.meta.url));
  const file = ts.findConfigFile(dir, ts.sys.fileExists, "tsconfig.json");
  assert.ok(file, "src/portal/static/tsconfig.json");
  const { config, error } = ts.readConfigFile(file, ts.sys.readFile);
  assert.equal(error, undefined);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, dir);
  assert.ok(parsed.fileNames.some((f) => f.endsWith("app.js")));
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.formatDiagnostic(d, {
    getCanonicalFileName: (f) => f, getCurrentDirectory: () => dir, getNewLine: () => "\n",
  }));
  assert.deepEqual(problems, []);
});
