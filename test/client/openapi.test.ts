/**
 * The SDK's types cannot drift from /openapi.json: src/client/openapi.ts must be exactly what
 * scripts/gen-client-types.ts generates from the live document today, every operation the
 * SDK calls must be in that document with its method and path, and the verify API's verdict
 * type must fit the engine's, which the middleware hands to its error styles.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { generateClientTypes, TYPES_FILE } from "../../scripts/gen-client-types.js";
import { OPERATIONS } from "../../src/client/index.js";
import type { Verdict as ClientVerdict, VerdictCode as ClientVerdictCode } from "../../src/client/index.js";
import type { UsageEvent as ClientUsageEvent } from "../../src/client/index.js";
import type { Verdict as EngineVerdict } from "../../src/verify/engine.js";
import type { UsageEventView } from "../../src/analytics/events.js";
import type { VerdictCode as EngineVerdictCode } from "../../src/verify/codes.js";
import { startService } from "./support.js";
import type { Service } from "./support.js";

let service: Service;
before(async () => { service = await startService(); });
after(async () => { await service?.close(); });

test("src/client/openapi.ts is what the generator makes from the current schemas", async () => {
  const generated = await generateClientTypes();
  const committed = readFileSync(TYPES_FILE, "utf8");
  if (generated !== committed) {
    const a = committed.split("\n");
    const b = generated.split("\n");
    const line = a.findIndex((l, i) => l !== b[i]);
    assert.fail(
      `src/client/openapi.ts is out of date with /openapi.json (first difference at line ${line + 1}:\n` +
      `  committed: ${a[line]?.trim()}\n  generated: ${b[line]?.trim()}).\n` +
      "Run: node --import tsx scripts/gen-client-types.ts",
    );
  }
});

test("every operation the SDK calls is served and documented at /openapi.json, with its method and path", () => {
  const paths = service.document.paths as Record<string, Record<string, unknown>>;
  for (const op of Object.keys(OPERATIONS)) {
    const [method, path] = op.split(" ") as [string, string];
    assert.ok(paths[path]?.[method.toLowerCase()], `${op} is not in /openapi.json`);
  }
});

test("the SDK's verdict is the engine's verdict: same codes, assignable field by field", () => {
  // Compile-time checks; a drift in either type makes this file fail to type-check.
  const fits = (v: ClientVerdict): EngineVerdict => v;
  type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
  const codes: Same<ClientVerdictCode, EngineVerdictCode> = true;
  assert.equal(codes, true);
  assert.equal(typeof fits, "function");
});

test("the live stream's event, typed from the log's schema, is the event view the service sends", () => {
  // Compile-time: GET /v1/events documents no body schema, so the SDK types its events as a log without its id.
  type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
  const same: Same<ClientUsageEvent, UsageEventView> = true;
  assert.equal(same, true);
});
