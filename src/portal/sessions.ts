import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { Clock } from "../lib/clock.js";
import { KeygateError } from "../lib/errors.js";
import type { PortalSession, PortalUser, Store } from "../store/types.js";

/**
 * Portal sessions: a random 256-bit secret in an HttpOnly, SameSite=Lax cookie scoped to
 * /portal (Secure, with the `__Secure-` prefix, over https); the store keeps only its SHA-256,
 * the user, an absolute expiry and the session's CSRF token.
 *
 * CSRF: every state-changing request carries `X-CSRF-Token`. Signed in, it must equal the
 * session's synchronizer token; signed out (sign-in, sign-up), it must equal the `kg_portal_csrf`
 * cookie (double submit). Either way a browser's `Origin` (or `Sec-Fetch-Site`) must be this
 * server's own. A cross-site page can neither read the token nor send the header without a
 * CORS preflight, which keygate never grants.
 */
export const CSRF_HEADER = "x-csrf-token";

const SESSION_COOKIE = "kg_portal";
const CSRF_COOKIE = "kg_portal_csrf";
const COOKIE_PATH = "/portal";

export const sha256 = (value: string): string => createHash("sha256").update(value).digest("hex");
const token = (): string => randomBytes(32).toString("base64url");

/** The session of a signed-in request, with its user as the store has it now. */
export interface SignedIn {
  session: PortalSession;
  user: PortalUser;
}

export interface PortalSessions {
  /** Starts a new session for `user` (a fresh id: no fixation) and sets its cookie. */
  start(request: FastifyRequest, reply: FastifyReply, user: PortalUser): Promise<PortalSession>;
  /** The request's live session, or null: no cookie, unknown, or expired (then deleted). */
  read(request: FastifyRequest): Promise<SignedIn | null | "expired">;
  /** Deletes the request's session, if any, and clears its cookie. */
  end(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  /** Deletes the request's session, if any, leaving the cookie to be replaced by a new one. */
  discard(request: FastifyRequest): Promise<void>;
  /** The double-submit token for a signed-out browser, set as a cookie when it has none. */
  signedOutToken(request: FastifyRequest, reply: FastifyReply): string;
  /** Throws 403 unless the request is same-origin and carries the right CSRF token. */
  checkCsrf(request: FastifyRequest, session: PortalSession | null): void;
}

/** Whether the browser reached keygate over TLS (directly, or through a trusted proxy). */
const secure = (request: FastifyRequest): boolean => request.protocol === "https";
const cookieName = (request: FastifyRequest, name: string): string => (secure(request) ? `__Secure-${name}` : name);

/** Cookies of a request, by name; the first of a repeated name wins (RFC 6265 order: most specific path first). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 1) continue;
    const name = part.slice(0, eq).trim();
    if (out.has(name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith("\"") && value.endsWith("\"")) value = value.slice(1, -1);
    out.set(name, value);
  }
  return out;
}

function setCookie(reply: FastifyReply, request: FastifyRequest, name: string, value: string, options: { maxAgeSeconds: number; sameSite: "Lax" | "Strict" }): void {
  const parts = [`${cookieName(request, name)}=${value}`, `Path=${COOKIE_PATH}`, `Max-Age=${options.maxAgeSeconds}`, "HttpOnly", `SameSite=${options.sameSite}`];
  if (secure(request)) parts.push("Secure");
  const existing = reply.getHeader("set-cookie");
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing.map(String) : [String(existing)];
  reply.header("set-cookie", [...list, parts.join("; ")]);
}

const sameToken = (given: string | undefined, expected: string | undefined): boolean => {
  if (!given || !expected) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
};

const refuse = (code: string, message: string): KeygateError => new KeygateError(code, message, 403);

/**
 * @example
 * const sessions = createPortalSessions({ store, clock, ttlMs: 12 * 3_600_000 });
 * const signedIn = await sessions.read(request);
 */
export function createPortalSessions(options: { store: Store; clock: Clock; ttlMs: number }): PortalSessions {
  const { store, clock, ttlMs } = options;
  const idHashOf = (request: FastifyRequest): string | null => {
    const id = parseCookies(request.headers.cookie).get(cookieName(request, SESSION_COOKIE));
    return id && /^[A-Za-z0-9_-]{43}$/.test(id) ? sha256(id) : null;
  };

  return {
    async start(request, reply, user) {
      const id = token();
      const now = clock.now();
      const session: PortalSession = {
        idHash: sha256(id), userId: user.id, csrfToken: token(), createdAt: now, expiresAt: now + ttlMs,
        ip: request.ip || null, userAgent: String(request.headers["user-agent"] ?? "").slice(0, 300) || null,
      };
      await store.createPortalSession(session);
      setCookie(reply, request, SESSION_COOKIE, id, { maxAgeSeconds: Math.floor(ttlMs / 1000), sameSite: "Lax" });
      return session;
    },

    async read(request) {
      const idHash = idHashOf(request);
      if (idHash === null) return null;
      const session = await store.getPortalSession(idHash);
      if (!session) return null;
      if (session.expiresAt <= clock.now()) {
        await store.deletePortalSession(idHash);
        return "expired";
      }
      const user = await store.getPortalUser(session.userId);
      if (!user) return null;
      return { session, user };
    },

    async end(request, reply) {
      const idHash = idHashOf(request);
      if (idHash !== null) await store.deletePortalSession(idHash);
      setCookie(reply, request, SESSION_COOKIE, "", { maxAgeSeconds: 0, sameSite: "Lax" });
    },

    async discard(request) {
      const idHash = idHashOf(request);
      if (idHash !== null) await store.deletePortalSession(idHash);
    },

    signedOutToken(request, reply) {
      const current = parseCookies(request.headers.cookie).get(cookieName(request, CSRF_COOKIE));
      if (current && /^[A-Za-z0-9_-]{43}$/.test(current)) return current;
      const fresh = token();
      setCookie(reply, request, CSRF_COOKIE, fresh, { maxAgeSeconds: 86_400, sameSite: "Strict" });
      return fresh;
    },

    checkCsrf(request, session) {
      const origin = request.headers.origin;
      if (origin !== undefined) {
        if (origin !== `${request.protocol}://${request.host}`) {
          throw refuse("CSRF_ORIGIN_REFUSED", `Requests from ${origin} cannot change anything here; use the portal itself.`);
        }
      } else {
        const site = request.headers["sec-fetch-site"];
        if (site !== undefined && site !== "same-origin" && site !== "none") {
          throw refuse("CSRF_ORIGIN_REFUSED", "Cross-site requests cannot change anything here; use the portal itself.");
        }
      }
      const given = request.headers[CSRF_HEADER];
      const value = typeof given === "string" ? given : undefined;
      const expected = session ? session.csrfToken : parseCookies(request.headers.cookie).get(cookieName(request, CSRF_COOKIE));
      if (!sameToken(value, expected)) {
        throw refuse("CSRF_TOKEN_INVALID", `Send the csrfToken of GET /portal/api/session in the ${CSRF_HEADER} header; reload the page if it is open for long.`);
      }
    },
  };
}
