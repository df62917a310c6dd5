import type { FastifyInstance } from "fastify";
import type { ApiConfig } from "../../config/schema.js";
import type { Keygate } from "../../keygate.js";
import type { Verdict } from "../../verify/engine.js";
import { authenticateRequest, extractCredential, rateLimitHeaders } from "../authenticate.js";
import { renderError } from "../error-styles/index.js";

/** `203.0.113.45/32` → `203.0.113.45`: single addresses are shown as clients typed them. */
const showCidr = (c: string): string => c.replace(/\/(32|128)$/, "");

/** The label of the key's scope set (READ-WRITE, READ-ONLY), or the scopes joined. */
function scopeLabel(api: ApiConfig, scopes: readonly string[]): string {
  const have = [...scopes].sort().join(" ");
  for (const [label, set] of Object.entries(api.introspection?.scopeLabels ?? {})) {
    if ([...set].sort().join(" ") === have) return label;
  }
  return scopes.join(" ");
}

/**
 * Per-API key introspection: a client checks its own key, e.g. the top-up API's
 * `GET /v3/validate`. Styles: `oneclickdz` (the seed's exact body) and `keygate`.
 */
export function registerIntrospection(app: FastifyInstance, keygate: Keygate): void {
  for (const { config: api } of keygate.apis.values()) {
    const spec = api.introspection;
    if (!spec) continue;
    app.get(spec.path, { schema: { hide: true } }, async (request, reply) => {
      const { verdict } = await authenticateRequest(keygate, { api, headers: request.headers, ip: request.ip, route: null });
      const rl = rateLimitHeaders(api, verdict, keygate.clock.now());
      if (!verdict.valid) {
        const r = renderError(api, verdict, { requestId: request.id, ip: request.ip, bearer: api.credentials.some((c) => c.type === "bearer" || c.type === "jwt") });
        return reply.code(r.status).headers({ ...r.headers, ...rl }).type(r.contentType).send(r.body);
      }
      reply.headers(rl).header("cache-control", "no-store");
      if (spec.style === "keygate") return introspect(verdict);
      const key = await keygate.keys.get(verdict.keyId!);
      const account = await keygate.accounts.get(verdict.accountId!);
      return {
        success: true,
        data: {
          username: typeof account.metadata.username === "string" ? account.metadata.username : account.name,
          apiKey: {
            // The seed echoes the key the client just sent; nothing the client does not already hold.
            key: extractCredential(api, request.headers).key,
            isEnabled: key.enabled,
            type: key.environment.toUpperCase(),
            allowedips: key.ipAllowlist.map(showCidr),
            scope: scopeLabel(api, key.scopes),
          },
        },
      };
    });
  }
}

function introspect(v: Verdict): Record<string, unknown> {
  return {
    valid: true, keyId: v.keyId, accountId: v.accountId, applicationId: v.applicationId ?? null, environment: v.environment,
    scopes: v.scopes, expiresAt: v.expiresAt ?? null, ratelimit: v.ratelimit ?? null,
  };
}
