/**
 * Helpers of the portal tests: keygate with the portal on a Fastify app (in-process, SQLite or
 * memory), and a browser-like client that keeps cookies and sends the CSRF token as the page
 * does, over `inject` or over real HTTP.
 */
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { buildServer } from "../../src/http/server.js";
import { createKeygate } from "../../src/keygate.js";
import type { Keygate } from "../../src/keygate.js";
import { sha256Hex } from "../../src/keys/hash.js";
import type { Clock } from "../../src/lib/clock.js";
import { registerPortal } from "../../src/portal/index.js";
import type { Store } from "../../src/store/types.js";

export const ROOT_KEY = "portal-test-root-key-0123456789abcdefghijkl";
export const PASSWORD = "correct horse battery staple";

export interface PortalServer {
  keygate: Keygate;
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * keygate with `config` and the portal registered with `clock` (so tests can move time).
 * buildServer's own registration is turned off (`portal.enabled: false`) and done here
 * instead, with the clock; the routes, error handling and hooks are the same. With
 * `portal: { enabled: false }` the portal is not registered at all.
 */
export async function startPortal(options: { config: Record<string, unknown>; store?: Store; clock?: Clock; portal?: Record<string, unknown> }): Promise<PortalServer> {
  const portal = { ...(options.portal ?? {}) };
  const keygate = await createKeygate({
    config: {
      cache: { changePollMs: 0 }, usage: { flushIntervalMs: 600_000 }, analytics: { flushIntervalMs: 600_000 },
      ...options.config, portal: { ...portal, enabled: false },
    },
    ...(options.store ? { store: options.store } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const app = await buildServer({ keygate, rootKeyHash: sha256Hex(ROOT_KEY) });
  if (portal.enabled !== false) await app.register((scope) => registerPortal(scope, { keygate, rootKeyHash: sha256Hex(ROOT_KEY), clock: options.clock }));
  await app.ready();
  return {
    keygate, app,
    async close() {
      await app.close();
      await keygate.close();
    },
  };
}

export interface Res {
  status: number;
  body: any;
  raw: string;
  headers: LightMyRequestResponse["headers"];
}

/** A browser: a cookie jar, the CSRF token of the last session read, and the page's headers. */
export class PortalClient {
  cookies = new Map<string, string>();
  csrf = "";
  accountId = "";
  constructor(private readonly app: FastifyInstance, private readonly ip = "198.51.100.10") {}

  async request(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res> {
    const res = await this.app.inject({
      method, url, remoteAddress: this.ip,
      headers: {
        ...(this.cookies.size ? { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ") } : {}),
        ...(method !== "GET" ? { "x-csrf-token": this.csrf } : {}),
        ...headers,
      },
      ...(body === undefined ? (method === "GET" ? {} : { payload: {} }) : { payload: body as object }),
    });
    const setCookie = res.headers["set-cookie"];
    for (const line of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const [pair] = line.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      if (value === "" || /Max-Age=0/.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    let parsed: unknown = null;
    try { parsed = res.body ? JSON.parse(res.body) : null; } catch { parsed = null; }
    return { status: res.statusCode, body: parsed, raw: res.body, headers: res.headers };
  }

  get = (url: string, headers?: Record<string, string>) => this.request("GET", url, undefined, headers);
  post = (url: string, body?: unknown, headers?: Record<string, string>) => this.request("POST", url, body, headers);

  /** Reads the session as the page does on load, keeping its CSRF token. */
  async session(): Promise<Res> {
    const res = await this.get("/portal/api/session");
    if (res.status === 200) this.csrf = res.body.csrfToken;
    return res;
  }

  async signUp(email: string, company = "Acme", password = PASSWORD): Promise<Res> {
    await this.session();
    const res = await this.post("/portal/api/sign-up", { name: "Dev", company, email, password });
    if (res.status === 201) { this.csrf = res.body.csrfToken; this.accountId = res.body.account?.id ?? ""; }
    return res;
  }

  async signIn(email: string, password = PASSWORD): Promise<Res> {
    await this.session();
    const res = await this.post("/portal/api/sign-in", { email, password });
    if (res.status === 200) { this.csrf = res.body.csrfToken; this.accountId = res.body.account?.id ?? ""; }
    return res;
  }

  /** `/portal/api/accounts/<own account><path>` */
  own = (path = ""): string => `/portal/api/accounts/${this.accountId}${path}`;
}

/** Creates a portal user with the root key. */
export async function createUser(app: FastifyInstance, body: Record<string, unknown>): Promise<Res> {
  const res = await app.inject({ method: "POST", url: "/v1/portal/users", headers: { authorization: `Bearer ${ROOT_KEY}` }, payload: body });
  return { status: res.statusCode, body: res.json(), raw: res.body, headers: res.headers };
}
