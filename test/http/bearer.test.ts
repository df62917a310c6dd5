import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { bearerToken } from "../../src/http/bearer.js";

/** RFC 6750 §2.1 as the one regular expression it was read with before the fast path. */
const reference = (header: string | undefined): string | null => {
  if (!header) return null;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m ? m[1]! : null;
};

describe("bearerToken", () => {
  test("reads the token of the usual and the unusual spellings, and nothing else", () => {
    const cases: Array<[string | undefined, string | null]> = [
      ["Bearer kg_live_abc", "kg_live_abc"],
      ["bearer kg_live_abc", "kg_live_abc"],
      ["BEARER\tkg_live_abc", "kg_live_abc"],
      ["Bearer   kg_live_abc", "kg_live_abc"],
      ["Bearer kg_live_abc \t", "kg_live_abc"],
      ["Bearer kg_live abc", null],
      ["Bearer kg_live_abc\n", null],
      ["Bearer a\u00a0b", null],
      ["Bearer\u00a0kg_live_abc", null],
      ["Bearer ", null],
      ["Bearer", null],
      ["Bearerkg_live_abc", null],
      ["Basic dXNlcjpwYXNz", null],
      ["", null],
      [undefined, null],
    ];
    for (const [header, want] of cases) assert.equal(bearerToken(header), want, JSON.stringify(header));
  });

  test("agrees with the RFC 6750 expression on random headers", () => {
    const parts = ["Bearer", "bearer", "BeArEr", "Basic", " ", "  ", "\t", "\n", "\u00a0", "kg_", "abc", "=", "~", "é", "x y"];
    for (let i = 0; i < 20_000; i++) {
      let header = "";
      for (let n = randomInt(1, 6); n > 0; n--) header += parts[randomInt(parts.length)];
      assert.equal(bearerToken(header), reference(header), JSON.stringify(header));
    }
  });
});
