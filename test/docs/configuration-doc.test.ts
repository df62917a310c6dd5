/**
 * Every field of the config schema is described in docs/configuration.md: top-level fields by
 * their dotted path (`portal.lockout.maxFailures`), fields of an API by their name within it.
 * A field added to src/config/schema.ts without a line of documentation fails here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ConfigSchema } from "../../src/config/schema.js";

const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");

function leaves(schema: any, path: string, out: string[]): string[] {
  if (schema.anyOf) for (const s of schema.anyOf) leaves(s, path, out);
  else if (schema.type === "array" && schema.items) leaves(schema.items, `${path}[]`, out);
  else if (schema.type === "object" && schema.properties) for (const [k, v] of Object.entries(schema.properties)) leaves(v, path ? `${path}.${k}` : k, out);
  else out.push(path);
  return [...new Set(out)];
}

test("every config field is documented in docs/configuration.md", () => {
  const fields = leaves(ConfigSchema, "", []);
  assert.ok(fields.length > 80, `walked ${fields.length} fields`);
  const undocumented = fields.filter((path) => {
    const parts = path.replace(/\[\]/g, "").split(".");
    if (parts[0] !== "apis") return !doc.includes(`\`${parts.join(".")}\``);
    // Inside apis[]: the field's own name, its dotted path in the API, or its parent's row.
    const inApi = parts.slice(1);
    const candidates = [inApi.join("."), inApi[inApi.length - 1]!, inApi.slice(0, -1).join(".")].filter(Boolean);
    return !candidates.some((c) => doc.includes(`\`${c}\``));
  });
  assert.deepEqual(undocumented, []);
});
