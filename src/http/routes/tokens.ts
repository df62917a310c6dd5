/**
 * Token endpoints (Client ID + API key → short-lived JWT) and the JWKS that verifies them.
 *
 * Two styles per API (`tokens.endpoints`):
 * - `clickpesa`: `POST` with the Client ID and API key in headers (`client-id`, `api-key`),
 *   answering `{"success": true, "token": "Bearer <jwt>"}`, as the payments seed does; failures
 *   in the API's error style.
 * - `oauth2`: RFC 6749 §4.4 client credentials: `grant_type=client_credentials` as a form,
 *   the Client ID and API key as HTTP Basic (§2.3.1) or as `client_id` / `client_secret`
 *   form fields, an optional narrower `scope`; errors as §5.2 JSON; `Cache-Control: no-store`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ApiConfig } from "../../config/schema.js";
import type { Keygate } from "../../keygate.js";
import type { Verdict } from "../../verify/engine.js";
import { VERDICT_MESSAGES } from "../../verify/codes.js";
import { rateLimitHeaders } from "../authenticate.js";
import { renderError } from "../error-styles/index.js";

type Endpoint = NonNullable<ApiConfig["tokens"]>["endpoints"][number];

const NO_STORE = { "cache-control": "no-store", pragma: "no-cache" };
const FORM = "application/x-www-form-urlencoded";

const headerOf = (request: FastifyRequest, name: string): string | undefined => {
  const v = request.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
};

/**
 * `/.well-known/jwks.json` and every API's token endpoints. Registered in its own scope on
 * the main port, and on the gateway port when the gateway has one (clients call it there).
 */
export function registerTokenRoutes(app: FastifyInstance, keygate: Keygate): void {
  app.get("/.well-known/jwks.json", { schema: { hide: true } }, async (_request, reply) => {
    // Short enough that verifiers pick up a rotated-in key soon; they refetch on an unknown kid anyway.
    reply.header("cache-control", "public, max-age=60");
    return keygate.tokens.jwks();
  });

  // RFC 6749 §4.4.2: the token request is a form. Parsed into arrays so repeated parameters,
  // which §3.2 forbids, can be refused rather than silently picking one.
  app.addContentTypeParser(FORM, { parseAs: "string" }, (_request, body, done) => {
    const form: Record<string, string[]> = {};
    for (const [k, v] of new URLSearchParams(body as string)) (form[k] ??= []).push(v);
    done(null, form);
  });

  for (const { config: api } of keygate.apis.values()) {
    for (const endpoint of api.tokens?.endpoints ?? []) {
      if (endpoint.style === "clickpesa") registerHeaderStyle(app, keygate, api, endpoint);
      else registerOAuth2(app, keygate, api, endpoint.path);
    }
  }
}

function registerHeaderStyle(app: FastifyInstance, keygate: Keygate, api: ApiConfig, endpoint: Extract<Endpoint, { style: "clickpesa" }>): void {
  app.post(endpoint.path, { schema: { hide: true } }, async (request, reply) => {
    const issued = await keygate.tokens.issue({
      api: api.id, clientId: headerOf(request, endpoint.clientIdHeader), key: headerOf(request, endpoint.apiKeyHeader), ip: request.ip,
    });
    reply.headers({ ...NO_STORE, ...rateLimitHeaders(api, issued.verdict, keygate.clock.now()) });
    if (!issued.ok) {
      const r = renderError(api, issued.verdict, { requestId: request.id, ip: request.ip, bearer: false });
      return reply.code(r.status).headers(r.headers).type(r.contentType).send(r.body);
    }
    return { success: true, token: `Bearer ${issued.token}` };
  });
}

/** RFC 6749 §5.2 error codes for a denied verdict, with the status the spec asks for. */
function oauthError(v: Verdict): { status: number; error: string } {
  switch (v.code) {
    case "INSUFFICIENT_SCOPE": return { status: 400, error: "invalid_scope" };
    case "RATE_LIMITED": return { status: 429, error: "temporarily_unavailable" };
    case "IP_BLOCKED": return { status: 403, error: "access_denied" };
    default: return { status: 401, error: "invalid_client" };
  }
}

/** `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1); null when absent or of another scheme. */
function basicCredentials(header: string | undefined): { id: string; secret: string } | "malformed" | null {
  if (!header) return null;
  const m = /^Basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i.exec(header);
  if (!m) return /^Basic\b/i.test(header) ? "malformed" : null;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon === -1) return "malformed";
  try {
    const un = (s: string): string => decodeURIComponent(s.replace(/\+/g, " "));
    return { id: un(decoded.slice(0, colon)), secret: un(decoded.slice(colon + 1)) };
  } catch {
    return "malformed";
  }
}

function registerOAuth2(app: FastifyInstance, keygate: Keygate, api: ApiConfig, path: string): void {
  const fail = (reply: FastifyReply, status: number, error: string, description: string, basic: boolean): FastifyReply => {
    reply.code(status).headers(NO_STORE);
    // §5.2: a client that tried HTTP authentication gets the challenge back with 401.
    if (status === 401 || basic) reply.header("www-authenticate", `Basic realm="${api.id}", charset="UTF-8"`);
    return reply.send({ error, error_description: description });
  };

  app.post(path, { schema: { hide: true } }, async (request, reply) => {
    const type = (headerOf(request, "content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const form = type === FORM ? (request.body as Record<string, string[]>) : null;
    if (!form) return fail(reply, 400, "invalid_request", `Send the token request as ${FORM} (RFC 6749 §4.4.2).`, false);
    const repeated = Object.entries(form).find(([, values]) => values.length > 1);
    if (repeated) return fail(reply, 400, "invalid_request", `The parameter ${repeated[0]} is given more than once.`, false);
    const param = (name: string): string | undefined => form[name]?.[0];

    const basic = basicCredentials(headerOf(request, "authorization"));
    if (basic === "malformed") return fail(reply, 401, "invalid_client", "The Basic credentials are not base64 of client_id:client_secret.", true);
    const grant = param("grant_type");
    if (grant === undefined) return fail(reply, 400, "invalid_request", "grant_type is required; this endpoint supports client_credentials.", basic !== null);
    if (grant !== "client_credentials") return fail(reply, 400, "unsupported_grant_type", `grant_type ${JSON.stringify(grant)} is not supported; use client_credentials.`, basic !== null);
    if (basic && (param("client_secret") !== undefined || (param("client_id") !== undefined && param("client_id") !== basic.id))) {
      return fail(reply, 400, "invalid_request", "Authenticate with HTTP Basic or with client_id and client_secret in the body, not both (RFC 6749 §2.3).", true);
    }
    const clientId = basic?.id ?? param("client_id");
    const secret = basic?.secret ?? param("client_secret");
    const scope = param("scope");
    const scopes = scope === undefined ? undefined : scope.split(" ").filter((s) => s !== "");

    const issued = await keygate.tokens.issue({ api: api.id, clientId, key: secret, ip: request.ip, scopes });
    reply.headers(rateLimitHeaders(api, issued.verdict, keygate.clock.now()));
    if (!issued.ok) {
      const { status, error } = oauthError(issued.verdict);
      if (issued.verdict.retryAfter !== undefined) reply.header("retry-after", String(issued.verdict.retryAfter));
      const description = issued.verdict.code === "INSUFFICIENT_SCOPE"
        ? `The API key does not hold ${issued.verdict.missingScopes?.join(", ") ?? "the requested scope"}.`
        : VERDICT_MESSAGES[issued.verdict.code];
      return fail(reply, status, error, description, basic !== null);
    }
    reply.headers(NO_STORE);
    return { access_token: issued.token, token_type: "Bearer", expires_in: issued.expiresIn, scope: issued.scopes.join(" ") };
  });
}
