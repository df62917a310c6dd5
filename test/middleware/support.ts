/**
 * Fixtures for the middleware suites: a keygate with four APIs (bearer + problem, a named
 * header + topup style, an identity pair + airtime-v2 style, JWTs), used either in-process or
 * behind a real keygate service (buildServer on 127.0.0.1:0) reached through the SDK.
 */
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { createKeygate } from "../../src/keygate.js";
import type { CreateKeyInput, Keygate } from "../../src/keygate.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { createKeygateClient } from "../../src/client/index.js";
import type { KeygateClient } from "../../src/client/index.js";
import type { KeygateMiddlewareOptions, RemoteCacheOptions } from "../../src/middleware/core.js";

export const ROOT_KEY = "middleware-test-root-key-0123456789abcdef";

export const CONFIG = {
  cache: { changePollMs: 0 },
  usage: { flushIntervalMs: 600_000 },
  analytics: { flushIntervalMs: 600_000 },
  apis: [
    {
      id: "pay",
      keyFormat: { prefix: "pk", checksum: true },
      scopes: ["wallets.read", "wallets.write"],
      lockout: { maxAttempts: 3, windowSeconds: 600, blockSeconds: 600 },
      rateLimitHeaders: { xRateLimit: true, ietf: true },
    },
    {
      id: "topup",
      keyFormat: { prefix: "tk" },
      scopes: ["balance.read", "topup.send"],
      credentials: [{ type: "header", name: "X-Access-Token" }],
      errorStyle: "topup",
      lockout: { enabled: false },
    },
    {
      id: "email",
      keyFormat: { prefix: "em", environmentInKey: false, environments: ["live"] },
      credentials: [{ type: "identity", identityHeader: "X-Email", secretHeader: "X-Token" }],
      errorStyle: "airtime-v2",
      lockout: { enabled: false },
    },
    {
      id: "pesa",
      keyFormat: { prefix: "cp" },
      scopes: ["payments.read"],
      credentials: [{ type: "jwt" }],
      tokens: { endpoints: [{ style: "oauth2", path: "/oauth/token" }] },
      lockout: { enabled: false },
    },
  ],
};

export type Mode = "in-process" | "remote";
export const MODES: Mode[] = ["in-process", "remote"];

/** A keygate service listening on 127.0.0.1:0. */
export interface Service {
  url: string;
  keygate: Keygate;
  close(): Promise<void>;
}

export async function startService(keygate: Keygate): Promise<Service> {
  const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, keygate, close: () => app.close() };
}

export const newKeygate = (): Promise<Keygate> => createKeygate({ config: CONFIG });

export interface Fixture {
  mode: Mode;
  /** Where the keys live: the middleware's own keygate, or the service's. */
  keygate: Keygate;
  accountId: string;
  service: Service | null;
  client: KeygateClient | null;
  /** The middleware options for an API in this mode. */
  options(api: string, extra?: { scopes?: string[]; cache?: RemoteCacheOptions | boolean }): KeygateMiddlewareOptions;
  key(input: Omit<CreateKeyInput, "accountId"> & { accountId?: string }): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

export async function createFixture(mode: Mode): Promise<Fixture> {
  const keygate = await newKeygate();
  const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
  const service = mode === "remote" ? await startService(keygate) : null;
  const client = service ? createKeygateClient({ baseUrl: service.url, rootKey: ROOT_KEY, retries: 0, timeoutMs: 5000 }) : null;
  return {
    mode, keygate, accountId: account.id, service, client,
    options(api, extra = {}) {
      if (!client) return { keygate, api, scopes: extra.scopes };
      // As a remote app would hold it: the API's entry of the same keygate.yaml.
      return { client, api: keygate.apis.get(api)!.config, scopes: extra.scopes, cache: extra.cache };
    },
    async key(input) {
      const created = await keygate.keys.create({ accountId: account.id, ...input });
      return { id: created.id, key: created.key };
    },
    async close() {
      await service?.close();
      await keygate.close();
    },
  };
}

/** The URL of a node http.Server listening on 127.0.0.1:0. */
export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export const closeServer = (server: Server): Promise<void> =>
  new Promise((resolve, reject) => {
    server.closeAllConnections?.();
    server.close((e) => (e ? reject(e) : resolve()));
  });

/** A fresh client address per call, so the lockout of one test never reaches another. */
let ipCounter = 0;
export const nextIp = (): string => `198.51.100.${(++ipCounter % 250) + 1}`;

export interface Sent {
  status: number;
  headers: Headers;
  body: any;
  text: string;
}

/** A request to the app under test, with a chosen client address (X-Forwarded-For from a trusted loopback proxy). */
export async function send(url: string, init: { method?: string; headers?: Record<string, string>; ip?: string; body?: unknown } = {}): Promise<Sent> {
  const headers: Record<string, string> = { "x-forwarded-for": init.ip ?? nextIp(), ...init.headers };
  if (init.body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url, { method: init.method ?? "GET", headers, ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) });
  const text = await res.text();
  let body: unknown = null;
  try { body = JSON.parse(text); } catch { body = null; }
  return { status: res.status, headers: res.headers, body, text };
}

export const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` });
