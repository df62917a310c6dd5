/**
 * docs/error-styles.md is generated from the renderers the server answers with; this test
 * regenerates it and fails when the committed file differs, so the reference stays true.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DOC_FILE, generateErrorStylesDoc } from "../../scripts/gen-error-styles-doc.js";
import { VERDICT_CODES } from "../../src/verify/codes.js";

test("docs/error-styles.md matches what the error styles render today", () => {
  const committed = readFileSync(DOC_FILE, "utf8");
  assert.equal(committed, generateErrorStylesDoc(), "Run: node --import tsx scripts/gen-error-styles-doc.ts");
});

test("every denial code has a row in every style's table", () => {
  const doc = generateErrorStylesDoc();
  const sections = doc.split(/^## /m).slice(1);
  assert.equal(sections.length, 4);
  for (const section of sections) {
    for (const code of VERDICT_CODES.filter((c) => c !== "VALID")) assert.match(section, new RegExp(`^\\| \`${code}\` \\| \\d{3} \\|`, "m"), `${section.split("\n")[0]}: ${code}`);
  }
  assert.match(doc, /\| `MISSING_CREDENTIALS` \| 400 \| `MISSING_ACCESS_TOKEN` \|/, "topup answers a missing token with 400 MISSING_ACCESS_TOKEN (seed 003)");
});
