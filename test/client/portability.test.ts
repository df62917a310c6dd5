/**
 * keygate/client runs wherever `fetch` does: its source imports nothing but its own files,
 * and it type-checks against the web platform's types alone (lib DOM, no @types/node), so a
 * Node-only API (Buffer, process, node:*) cannot slip in.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLIENT = fileURLToPath(new URL("../../src/client/", import.meta.url));
const TSC = fileURLToPath(new URL("../../node_modules/typescript/bin/tsc", import.meta.url));

test("the client's files import only each other", () => {
  for (const file of readdirSync(CLIENT).filter((f) => f.endsWith(".ts"))) {
    const source = readFileSync(join(CLIENT, file), "utf8");
    for (const [, specifier] of source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+["']([^"']+)["']/g)) {
      assert.match(specifier!, /^\.\/[a-z-]+\.js$/, `${file} imports ${specifier}`);
    }
  }
});

test("the client type-checks with the web platform's types and without Node's", () => {
  const dir = mkdtempSync(join(tmpdir(), "keygate-client-web-"));
  try {
    const config = join(dir, "tsconfig.json");
    writeFileSync(config, JSON.stringify({
      compilerOptions: {
        target: "ES2022", module: "ESNext", moduleResolution: "Bundler", lib: ["ES2022", "DOM"], types: [],
        strict: true, noUncheckedIndexedAccess: true, verbatimModuleSyntax: true, noEmit: true, skipLibCheck: true,
      },
      files: [join(CLIENT, "index.ts")],
    }));
    const result = spawnSync(process.execPath, [TSC, "-p", config], { encoding: "utf8" });
    assert.equal(result.status, 0, result.stdout + result.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
