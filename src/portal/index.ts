/**
 * The customer portal at /portal: sign-up and sign-in, applications, keys (shown once),
 * rotation, revocation, IP allowlists, usage charts, live rate-limit state and request logs,
 * each customer seeing only their own account; operators see every account. See docs/portal.md.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Keygate } from "../keygate.js";
import { matchesRootKey } from "../auth/root-key.js";
import { bearerToken } from "../http/bearer.js";
import { ConfigError, KeygateError } from "../lib/errors.js";
import { systemClock } from "../lib/clock.js";
import type { Clock } from "../lib/clock.js";
import { registerPortalAdminRoutes } from "./admin.js";
import { registerPortalApi } from "./api.js";
import { CONTENT_SECURITY_POLICY, registerPortalAssets } from "./assets.js";
import { createAttemptLimiter } from "./attempts.js";
import { createPortalSessions } from "./sessions.js";
import { createPortalUsers } from "./users.js";

export type { PortalApiView, SessionView } from "./api.js";
export type { PortalUserView, NewPortalUser } from "./users.js";
export { hashPassword, verifyPassword } from "./password.js";

export interface PortalOptions {
  keygate: Keygate;
  /** SHA-256 (hex) of the root key, which guards /v1/portal/users. */
  rootKeyHash: string;
  /** Session expiry and sign-in lockouts read it; the wall clock unless a test freezes one. */
  clock?: Clock | undefined;
}

/**
 * Registers the portal (`/portal`, `/portal/assets/*`, `/portal/api/*`) and the root key's
 * `/v1/portal/users` on a Fastify instance whose error handler renders KeygateErrors (the one
 * `buildServer` makes). Throws a ConfigError when `portal.operatorOnlyApis` names an unknown API.
 *
 * @example
 * const app = await buildServer({ keygate, rootKeyHash }); // registers the portal when portal.enabled
 * // or, on an app of your own:
 * await app.register((scope) => registerPortal(scope, { keygate, rootKeyHash }));
 */
export async function registerPortal(app: FastifyInstance, options: PortalOptions): Promise<void> {
  const { keygate } = options;
  const settings = keygate.config.portal;
  for (const [i, api] of settings.operatorOnlyApis.entries()) {
    if (!keygate.apis.has(api)) throw new ConfigError(`portal.operatorOnlyApis[${i}]: no API ${JSON.stringify(api)}; known: ${[...keygate.apis.keys()].join(", ")}`);
  }
  const clock = options.clock ?? systemClock;
  const users = createPortalUsers({ store: keygate.store, clock, settings });
  const sessions = createPortalSessions({ store: keygate.store, clock, ttlMs: Math.round(settings.sessionTtlHours * 3_600_000) });
  const attempts = createAttemptLimiter({ limit: settings.ipRateLimit.limit, windowMs: settings.ipRateLimit.windowSeconds * 1000 }, clock);

  app.addHook("onRequest", async (request, reply) => {
    if (!request.url.startsWith("/portal")) return;
    reply.header("content-security-policy", CONTENT_SECURITY_POLICY)
      .header("x-content-type-options", "nosniff")
      .header("x-frame-options", "DENY")
      .header("referrer-policy", "same-origin")
      .header("cross-origin-opener-policy", "same-origin")
      .header("cross-origin-resource-policy", "same-origin")
      .header("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()");
  });

  await app.register(async (assets) => registerPortalAssets(assets, settings.title));
  await app.register(async (api) => registerPortalApi(api, { keygate, clock, users, sessions, attempts, settings }));
  await app.register(async (admin) => {
    admin.addHook("onRequest", async (request: FastifyRequest) => {
      const token = bearerToken(request.headers.authorization);
      if (token === null) throw new KeygateError("UNAUTHORIZED", "Send the root key as `Authorization: Bearer <root key>`.", 401);
      if (!matchesRootKey(token, options.rootKeyHash)) throw new KeygateError("UNAUTHORIZED", "The root key is not valid.", 401);
    });
    registerPortalAdminRoutes(admin, { keygate, users, clock });
  });

  // Ended sessions are deleted when next presented; this sweeps those never presented again.
  const prune = setInterval(() => { keygate.store.prunePortalSessions(clock.now()).catch(() => { /* next hour */ }); }, 3_600_000);
  prune.unref();
  app.addHook("onClose", async () => { clearInterval(prune); });
}
