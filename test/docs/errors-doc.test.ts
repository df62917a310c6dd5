/**
 * docs/errors.md lists every error code keygate answers with: each code given to
 * `new KeygateError(...)` or `notFound(...)` anywhere in src/ must have its row there, so a new
 * code cannot ship undocumented.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import assert from "node:assert/strict";

const root = fileURLToPath(new URL("../..", import.meta.url)).replace(/\/$/, "");

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith(".ts") ? [path] : [];
  });
}

test("every error code raised in src/ is documented in docs/errors.md", () => {
  const doc = readFileSync(join(root, "docs", "errors.md"), "utf8");
  const codes = new Map<string, string>();
  for (const file of sources(join(root, "src"))) {
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/new KeygateError\(\s*"([A-Z][A-Z0-9_]+)"/g)) codes.set(m[1]!, file);
    for (const m of text.matchAll(/\bnotFound\(\s*"([a-z]+)"/g)) codes.set(`${m[1]!.toUpperCase()}_NOT_FOUND`, file);
  }
  assert.ok(codes.size >= 50, `found only ${codes.size} codes: the scan is broken`);
  const missing = [...codes].filter(([code]) => !doc.includes(`\`${code}\``)).map(([code, file]) => `${code} (${file.slice(root.length + 1)})`);
  assert.deepEqual(missing, [], "add a row to docs/errors.md for each");
});
