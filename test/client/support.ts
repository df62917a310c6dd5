/**
 * A real keygate service for the SDK tests (buildServer on 127.0.0.1:0, memory store), the
 * document it serves, and a check of SDK answers against that document's response schemas.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { ValidateFunction } from "ajv";
import formats from "ajv-formats";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import type { OperationKey } from "../../src/client/operations.js";

export const ROOT_KEY = "client-test-root-key-0123456789abcdefghij";

export const CONFIG = {
  cache: { changePollMs: 0 },
  usage: { flushIntervalMs: 600_000 },
  analytics: { flushIntervalMs: 600_000 },
  apis: [{
    id: "pay",
    keyFormat: { prefix: "pk", checksum: true },
    scopes: ["charges.read", "charges.write"],
    features: { collect: ["charges.read", "charges.write"], view: ["charges.read"] },
    tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] },
    lockout: { maxAttempts: 50 },
  }],
};

export interface Service {
  url: string;
  keygate: Keygate;
  /** The document the service serves at /openapi.json. */
  document: any;
  close(): Promise<void>;
}

export async function startService(): Promise<Service> {
  const keygate = await createKeygate({ config: CONFIG });
  const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const document = await (await fetch(`${url}/openapi.json`)).json();
  return {
    url, keygate, document,
    async close() {
      await app.close();
      await keygate.close();
    },
  };
}

/**
 * `check(op, status, value)` asserts that `value` is valid under the schema the document
 * gives for that operation's response, and returns it.
 */
export function responseChecker(document: any): <T>(op: OperationKey, status: number, value: T) => T {
  // OpenAPI 3.1's dialect is JSON Schema 2020-12; `example` is an OpenAPI annotation.
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  formats.default(ajv);
  ajv.addKeyword("example");
  const compiled = new Map<string, ValidateFunction>();
  return (op, status, value) => {
    const [method, path] = op.split(" ") as [string, string];
    const key = `${op} ${status}`;
    let validate = compiled.get(key);
    if (!validate) {
      const schema = document.paths?.[path]?.[method.toLowerCase()]?.responses?.[status]?.content?.["application/json"]?.schema;
      assert.ok(schema, `/openapi.json has no ${status} JSON response for ${op}`);
      validate = ajv.compile(schema);
      compiled.set(key, validate);
    }
    assert.ok(validate(value), `${op} answered outside its schema: ${ajv.errorsText(validate.errors)}`);
    return value;
  };
}
