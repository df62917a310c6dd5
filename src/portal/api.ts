import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RateLimitConfig } from "../config/schema.js";
import type { AccountView, ApplicationView, Keygate, KeyView } from "../keygate.js";
import { KeygateError, notFound } from "../lib/errors.js";
import type { Clock } from "../lib/clock.js";
import type { PortalUser } from "../store/types.js";
import { VERDICT_CODES, VERDICT_MESSAGES, VERDICT_STATUS } from "../verify/codes.js";
import type { AttemptLimiter } from "./attempts.js";
import type { PortalSessions, SignedIn } from "./sessions.js";
import { streamUsage } from "../http/usage-stream.js";
import { passwordProblem } from "./password.js";
import { checkEmail } from "./users.js";
import type { PortalUsers, PortalUserView } from "./users.js";
import {
  AccountParams, AnalyticsQuery, ApplicationParams, ChangePasswordBody, CreateAccountBody, CreateApplicationBody, CreateKeyBody,
  EmptyBody, EventsQuery, IpAllowlistsBody, KeyParams, ListAccountsQuery, ListKeysQuery, LogParams, LogsQuery, RotateKeyBody,
  SignInBody, SignUpBody, UpdateApplicationBody,
} from "./schemas.js";

/** What the portal's routes share. */
export interface PortalContext {
  keygate: Keygate;
  clock: Clock;
  users: PortalUsers;
  sessions: PortalSessions;
  attempts: AttemptLimiter;
  settings: Keygate["config"]["portal"];
}

/** The signed-in person behind a request. */
interface Actor extends SignedIn {
  operator: boolean;
}

/** What GET /portal/api/session answers: enough for the page to start. */
export interface SessionView {
  signedIn: boolean;
  /** Send it as X-CSRF-Token with every POST, PUT, PATCH and DELETE. */
  csrfToken: string;
  title: string;
  signUp: boolean;
  /** True when the cookie named a session that has ended. */
  expired?: boolean;
  user?: PortalUserView;
  account?: AccountView | null;
  expiresAt?: string;
}

/** An API as a customer needs to know it to create applications and keys. */
export interface PortalApiView {
  id: string;
  name: string;
  environments: string[];
  scopes: Array<{ name: string; description?: string | undefined }>;
  defaultScopes: string[];
  /** Application features and the scopes each grants; null when the API has none. */
  features: Record<string, string[]> | null;
  /** The limit a key gets unless it sets a lower one, per environment; null for none. */
  rateLimits: Record<string, RateLimitConfig | null>;
  /** The head keys of each environment start with. */
  keyPrefixes: Record<string, string>;
  /** False for `portal.operatorOnlyApis`: only operators issue, rotate and revoke its keys. */
  selfService: boolean;
  /** How clients send the key: the API's credential schemes. */
  credentials: Keygate["config"]["apis"][number]["credentials"];
  /** Token endpoints (Client ID + key → JWT), for APIs with `tokens`. */
  tokenEndpoints: string[];
}

const MAX_LIST = 2000;
const STATE_CHANGING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

const time = (v: string | undefined): number | undefined => (v === undefined ? undefined : Date.parse(v));

/**
 * The portal's JSON API under /portal/api. Every account-scoped route takes the account id in
 * its path; a customer may name only their own account, an operator any. Any id of another
 * account's object (account, application, key, log) answers 404 exactly as an unknown id does.
 */
export function registerPortalApi(parent: FastifyInstance, ctx: PortalContext): void {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const { keygate, users, sessions, attempts, settings } = ctx;
  const operatorOnly = new Set(settings.operatorOnlyApis);
  const actors = new WeakMap<FastifyRequest, Actor>();

  const actor = (request: FastifyRequest): Actor => {
    const a = actors.get(request);
    if (!a) throw new KeygateError("UNAUTHENTICATED", "Sign in first.", 401);
    return a;
  };

  const countAttempt = (request: FastifyRequest, reply: FastifyReply): void => {
    const verdict = attempts.take(request.ip);
    if (!verdict.allowed) {
      reply.header("retry-after", String(verdict.retryAfterSeconds));
      throw new KeygateError("TOO_MANY_ATTEMPTS", `Too many attempts from your address; try again in ${verdict.retryAfterSeconds} seconds.`, 429, { retryAfter: verdict.retryAfterSeconds });
    }
  };

  /** Signs in every route but the public ones, and checks CSRF on every state-changing request. */
  const PUBLIC = new Set(["/portal/api/session", "/portal/api/sign-in", "/portal/api/sign-up", "/portal/api/sign-out"]);
  app.addHook("onRequest", async (request, reply) => {
    reply.header("cache-control", "no-store");
    const path = request.routeOptions.url ?? "";
    if (PUBLIC.has(path)) return;
    const signedIn = await sessions.read(request);
    if (signedIn === "expired") throw new KeygateError("SESSION_EXPIRED", "Your session has ended; sign in again.", 401);
    if (signedIn === null) throw new KeygateError("UNAUTHENTICATED", "Sign in first.", 401);
    actors.set(request, { ...signedIn, operator: users.isOperator(signedIn.user) });
    if (STATE_CHANGING.has(request.method)) sessions.checkCsrf(request, signedIn.session);
  });

  // ---- Accounts, applications and keys a request may see ----

  const accountOf = async (request: FastifyRequest, accountId: string): Promise<AccountView> => {
    const a = actor(request);
    if (!a.operator && a.user.accountId !== accountId) throw notFound("account", accountId);
    return keygate.accounts.get(accountId);
  };

  const applicationOf = async (accountId: string, applicationId: string): Promise<ApplicationView> => {
    const found = await keygate.applications.get(applicationId).catch(missing);
    if (!found || found.accountId !== accountId) throw notFound("application", applicationId);
    return found;
  };

  const keyOf = async (accountId: string, keyId: string): Promise<KeyView> => {
    const found = await keygate.keys.get(keyId).catch(missing);
    if (!found || found.accountId !== accountId) throw notFound("key", keyId);
    return found;
  };

  /** Customers manage keys of self-service APIs only; operators every API's. */
  const requireSelfService = (request: FastifyRequest, api: string): void => {
    if (operatorOnly.has(api) && !actor(request).operator) {
      throw new KeygateError("OPERATOR_ONLY_API", `Credentials of API ${api} are issued, rotated and revoked by the provider; contact them.`, 403, { api });
    }
  };

  const apiOf = (api: string) => {
    const runtime = keygate.apis.get(api);
    if (!runtime) throw new KeygateError("UNKNOWN_API", `api: no API ${JSON.stringify(api)}; see GET /portal/api/apis.`, 400, { field: "api" });
    return runtime;
  };

  const sessionView = async (signedIn: SignedIn, csrfToken: string): Promise<SessionView> => {
    const account = signedIn.user.accountId === null ? null : await keygate.accounts.get(signedIn.user.accountId).catch(missing);
    return {
      signedIn: true, csrfToken, title: settings.title, signUp: settings.signUp, user: users.view(signedIn.user), account,
      expiresAt: new Date(signedIn.session.expiresAt).toISOString(),
    };
  };

  /** CSRF for the routes that work signed in or out: the live session's token, else the double-submit cookie's. */
  const checkEitherCsrf = async (request: FastifyRequest): Promise<SignedIn | null> => {
    const signedIn = await sessions.read(request);
    const live = signedIn !== null && signedIn !== "expired" ? signedIn : null;
    sessions.checkCsrf(request, live?.session ?? null);
    return live;
  };

  const startSession = async (request: FastifyRequest, reply: FastifyReply, user: PortalUser): Promise<SessionView> => {
    // A new session id at every sign-in: whatever session the browser had ends here.
    await sessions.discard(request);
    const session = await sessions.start(request, reply, user);
    return sessionView({ session, user }, session.csrfToken);
  };

  // ---- Session ----

  app.get("/portal/api/session", { schema: { hide: true } }, async (request, reply): Promise<SessionView> => {
    const signedIn = await sessions.read(request);
    if (signedIn !== null && signedIn !== "expired") return sessionView(signedIn, signedIn.session.csrfToken);
    return {
      signedIn: false, csrfToken: sessions.signedOutToken(request, reply), title: settings.title, signUp: settings.signUp,
      ...(signedIn === "expired" ? { expired: true } : {}),
    };
  });

  app.post("/portal/api/sign-up", { schema: { hide: true, body: SignUpBody } }, async (request, reply) => {
    await checkEitherCsrf(request);
    if (!settings.signUp) throw new KeygateError("SIGN_UP_DISABLED", "Sign-up is turned off here; ask the provider for an account.", 403);
    countAttempt(request, reply);
    const body = request.body;
    if (users.isOperatorEmail(body.email)) {
      throw new KeygateError("SIGN_UP_REFUSED", "This email cannot sign up here; ask the provider to create your user.", 403, { field: "email" });
    }
    if (await keygate.store.getPortalUserByEmail(body.email.trim())) {
      throw new KeygateError("EMAIL_TAKEN", "A user with this email exists already; sign in instead.", 409, { field: "email" });
    }
    // Validate the password before anything is created, so a weak one leaves no account behind.
    checkEmail(body.email);
    const probe = passwordProblem(body.password, body.email);
    if (probe) throw new KeygateError("WEAK_PASSWORD", `password: ${probe}`, 400, { field: "password" });
    const account = await keygate.accounts.create({ name: body.company.trim(), email: body.email.trim(), metadata: { createdVia: "portal" } });
    const user = await users.create({ email: body.email, password: body.password, name: body.name, accountId: account.id });
    return reply.code(201).send(await startSession(request, reply, user));
  });

  app.post("/portal/api/sign-in", { schema: { hide: true, body: SignInBody } }, async (request, reply) => {
    await checkEitherCsrf(request);
    countAttempt(request, reply);
    try {
      const user = await users.authenticate(request.body.email, request.body.password);
      return await startSession(request, reply, user);
    } catch (e) {
      if (e instanceof KeygateError && e.code === "SIGN_IN_LOCKED") reply.header("retry-after", String(e.details?.retryAfter ?? 60));
      throw e;
    }
  });

  app.post("/portal/api/sign-out", { schema: { hide: true } }, async (request, reply) => {
    await checkEitherCsrf(request);
    await sessions.end(request, reply);
    return reply.code(204).send();
  });

  app.post("/portal/api/password", { schema: { hide: true, body: ChangePasswordBody } }, async (request, reply) => {
    countAttempt(request, reply);
    const { user, session } = actor(request);
    await users.changePassword(user, request.body.currentPassword, request.body.newPassword);
    // Whoever else holds a session (a stolen cookie, a forgotten browser) is signed out now.
    const ended = await keygate.store.deletePortalSessions(user.id, session.idHash);
    return { changed: true, otherSessionsEnded: ended };
  });

  // ---- APIs ----

  app.get("/portal/api/apis", { schema: { hide: true } }, async () => ({
    /** Outcomes a request log can show, with what each means, for the log filter. */
    codes: VERDICT_CODES.map((code) => ({ code, status: VERDICT_STATUS[code], message: VERDICT_MESSAGES[code] })),
    data: [...keygate.apis.values()].map(({ config, codec, rateLimitFor }): PortalApiView => ({
      id: config.id, name: config.name ?? config.id, environments: config.keyFormat.environments,
      scopes: config.scopes.map((s) => (typeof s === "string" ? { name: s } : s)), defaultScopes: config.defaultScopes,
      features: config.features ?? null,
      rateLimits: Object.fromEntries(config.keyFormat.environments.map((e) => [e, rateLimitFor(e)])),
      keyPrefixes: Object.fromEntries(config.keyFormat.environments.map((e) => [e, codec.head(e)])),
      selfService: !operatorOnly.has(config.id), credentials: config.credentials,
      tokenEndpoints: config.tokens?.endpoints.map((e) => e.path) ?? [],
    })),
  }));

  // ---- Accounts ----

  app.get("/portal/api/accounts", { schema: { hide: true, querystring: ListAccountsQuery } }, async (request) => {
    const a = actor(request);
    if (!a.operator) {
      return { data: a.user.accountId === null ? [] : [await keygate.accounts.get(a.user.accountId)], nextCursor: null };
    }
    return keygate.accounts.list({ cursor: request.query.cursor, limit: 100 });
  });

  app.post("/portal/api/accounts", { schema: { hide: true, body: CreateAccountBody } }, async (request, reply) => {
    if (!actor(request).operator) throw new KeygateError("OPERATOR_REQUIRED", "Only the provider's operators create accounts.", 403);
    const account = await keygate.accounts.create({ name: request.body.name.trim(), email: request.body.email.trim(), metadata: { createdVia: "portal", createdBy: actor(request).user.id } });
    return reply.code(201).send(account);
  });

  app.get("/portal/api/accounts/:accountId", { schema: { hide: true, params: AccountParams } }, async (request) =>
    accountOf(request, request.params.accountId));

  app.put("/portal/api/accounts/:accountId/ip-allowlists", { schema: { hide: true, params: AccountParams, body: IpAllowlistsBody } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    // The page sends every environment it shows; an empty list clears that environment's.
    return keygate.accounts.update(account.id, { ipAllowlists: request.body.ipAllowlists });
  });

  // ---- Applications ----

  app.get("/portal/api/accounts/:accountId/applications", { schema: { hide: true, params: AccountParams } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    return { data: await everyPage((cursor) => keygate.applications.list({ accountId: account.id, cursor, limit: 100 })) };
  });

  app.post("/portal/api/accounts/:accountId/applications", { schema: { hide: true, params: AccountParams, body: CreateApplicationBody } }, async (request, reply) => {
    const account = await accountOf(request, request.params.accountId);
    const body = request.body;
    apiOf(body.api);
    const created = await keygate.applications.create({
      accountId: account.id, api: body.api, name: body.name.trim(), integrationType: body.integrationType, features: body.features,
      metadata: { createdVia: "portal", createdBy: actor(request).user.id },
    });
    return reply.code(201).send(created);
  });

  app.get("/portal/api/accounts/:accountId/applications/:applicationId", { schema: { hide: true, params: ApplicationParams } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    return applicationOf(account.id, request.params.applicationId);
  });

  app.patch("/portal/api/accounts/:accountId/applications/:applicationId", { schema: { hide: true, params: ApplicationParams, body: UpdateApplicationBody } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    const found = await applicationOf(account.id, request.params.applicationId);
    return keygate.applications.update(found.id, request.body);
  });

  // ---- Keys ----

  app.get("/portal/api/accounts/:accountId/keys", { schema: { hide: true, params: AccountParams, querystring: ListKeysQuery } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    const { applicationId } = request.query;
    if (applicationId !== undefined) await applicationOf(account.id, applicationId);
    const keys = await everyPage((cursor) => keygate.keys.list({ accountId: account.id, cursor, limit: 100 }));
    return { data: applicationId === undefined ? keys : keys.filter((k) => k.applicationId === applicationId) };
  });

  app.post("/portal/api/accounts/:accountId/keys", { schema: { hide: true, params: AccountParams, body: CreateKeyBody } }, async (request, reply) => {
    const account = await accountOf(request, request.params.accountId);
    const body = request.body;
    const runtime = apiOf(body.api);
    requireSelfService(request, body.api);
    const application = body.applicationId ? await applicationOf(account.id, body.applicationId) : null;
    if (application && application.api !== body.api) {
      throw new KeygateError("APPLICATION_MISMATCH", `applicationId: application ${application.name} is for API ${application.api}, not ${body.api}.`, 400, { field: "applicationId" });
    }
    if (body.name.trim() === "") throw new KeygateError("INVALID_REQUEST", "name: give the key a name.", 400, { field: "name" });
    const environment = body.environment ?? runtime.config.keyFormat.environments[0]!;
    if (body.rateLimit && !actor(request).operator) checkCustomerRateLimit(body.rateLimit, runtime.rateLimitFor(environment));
    countAttempt(request, reply);
    await users.confirmPassword(actor(request).user, body.password);
    const created = await keygate.keys.create({
      api: body.api, accountId: account.id, applicationId: application?.id ?? null, name: body.name.trim(), environment,
      scopes: body.scopes, ipAllowlist: body.ipAllowlist, expiresAt: body.expiresAt ?? null, rateLimit: body.rateLimit ?? null,
      metadata: { createdVia: "portal", createdBy: actor(request).user.id },
    });
    return reply.code(201).header("cache-control", "no-store").send({ key: created, clientId: application?.clientId ?? null });
  });

  app.get("/portal/api/accounts/:accountId/keys/:keyId", { schema: { hide: true, params: KeyParams } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    return keyOf(account.id, request.params.keyId);
  });

  app.post("/portal/api/accounts/:accountId/keys/:keyId/revoke", { schema: { hide: true, params: KeyParams, body: EmptyBody } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    const key = await keyOf(account.id, request.params.keyId);
    requireSelfService(request, key.api);
    return keygate.keys.revoke(key.id);
  });

  app.post("/portal/api/accounts/:accountId/keys/:keyId/rotate", { schema: { hide: true, params: KeyParams, body: RotateKeyBody } }, async (request, reply) => {
    const account = await accountOf(request, request.params.accountId);
    const key = await keyOf(account.id, request.params.keyId);
    requireSelfService(request, key.api);
    countAttempt(request, reply);
    await users.confirmPassword(actor(request).user, request.body.password);
    const rotated = await keygate.keys.rotate(key.id, { gracePeriodSeconds: request.body.gracePeriodSeconds });
    const application = key.applicationId === null ? null : await keygate.applications.get(key.applicationId).catch(missing);
    return reply.code(201).header("cache-control", "no-store").send({ ...rotated, clientId: application?.clientId ?? null });
  });

  app.get("/portal/api/accounts/:accountId/keys/:keyId/usage", { schema: { hide: true, params: KeyParams } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    return keygate.analytics.keyUsage(request.params.keyId, { accountId: account.id });
  });

  // ---- Usage, logs and the live feed ----

  /** A filter's key and application must be the account's own: another account's id is a 404, never an empty chart. */
  const ownFilter = async (accountId: string, q: { keyId?: string | undefined; applicationId?: string | undefined }): Promise<void> => {
    if (q.keyId !== undefined) await keyOf(accountId, q.keyId);
    if (q.applicationId !== undefined) await applicationOf(accountId, q.applicationId);
  };

  app.get("/portal/api/accounts/:accountId/analytics", { schema: { hide: true, params: AccountParams, querystring: AnalyticsQuery } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    const q = request.query;
    await ownFilter(account.id, q);
    return keygate.analytics.query({
      api: q.api, keyId: q.keyId, applicationId: q.applicationId, environment: q.environment,
      interval: q.interval ?? "hour", groupBy: q.groupBy ?? null, from: time(q.from), to: time(q.to), limit: 1000,
    }, { accountId: account.id });
  });

  app.get("/portal/api/accounts/:accountId/logs", { schema: { hide: true, params: AccountParams, querystring: LogsQuery } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    const q = request.query;
    await ownFilter(account.id, q);
    return keygate.analytics.logs({
      api: q.api, keyId: q.keyId, applicationId: q.applicationId, environment: q.environment, code: q.code,
      status: q.status === undefined ? undefined : Number(q.status), from: time(q.from), to: time(q.to),
      cursor: q.cursor, limit: q.limit === undefined ? 50 : Number(q.limit),
    }, { accountId: account.id });
  });

  app.get("/portal/api/accounts/:accountId/logs/:logId", { schema: { hide: true, params: LogParams } }, async (request) => {
    const account = await accountOf(request, request.params.accountId);
    return keygate.analytics.log(request.params.logId, { accountId: account.id });
  });

  /** Open live streams, ended when the server closes so close() does not wait for browsers. */
  const streams = new Set<() => void>();
  app.addHook("preClose", async () => { for (const end of [...streams]) end(); });

  app.get("/portal/api/accounts/:accountId/events", { schema: { hide: true, params: AccountParams, querystring: EventsQuery } }, async (request, reply) => {
    const account = await accountOf(request, request.params.accountId);
    await ownFilter(account.id, request.query);
    const { session } = actor(request);
    streamUsage(request, reply, {
      analytics: keygate.analytics, streams, retryMs: 3000, cacheControl: "no-store, no-transform",
      filter: { accountId: account.id, keyId: request.query.keyId, applicationId: request.query.applicationId },
      // The stream outlives no session: each heartbeat checks that it still exists and is current.
      beat: (stream) => {
        keygate.store.getPortalSession(session.idHash).then((s) => {
          if (!s || s.expiresAt <= ctx.clock.now()) { stream.send("signed-out", "{}"); stream.end(); return; }
          stream.heartbeat();
        }, () => { /* a store hiccup: try again at the next beat */ });
      },
    });
  });
}

/** Every page of a paginated list, up to {@link MAX_LIST} items (an account has far fewer). */
async function everyPage<T>(list: (cursor: string | undefined) => Promise<{ data: T[]; nextCursor: string | null }>): Promise<T[]> {
  const out: T[] = [];
  for (let cursor: string | undefined; ;) {
    const page = await list(cursor);
    out.push(...page.data);
    if (page.nextCursor === null || out.length >= MAX_LIST) return out;
    cursor = page.nextCursor;
  }
}

/** A facade 404 as null, so "missing" and "another account's" take one code path. */
function missing(e: unknown): null {
  if (e instanceof KeygateError && e.status === 404) return null;
  throw e;
}

/**
 * A customer may lower a key's rate limit but never raise it above the API's: no more requests
 * per window and no higher rate (a longer window at the same rate would allow larger bursts).
 */
export function checkCustomerRateLimit(wanted: RateLimitConfig, plan: RateLimitConfig | null): void {
  if (plan === null) return;
  if (wanted.limit > plan.limit || wanted.limit / wanted.windowSeconds > plan.limit / plan.windowSeconds) {
    throw new KeygateError("RATE_LIMIT_TOO_HIGH", `rateLimit: at most ${plan.limit} requests per ${plan.windowSeconds} seconds (your plan's limit); choose a lower one or none.`, 400, {
      field: "rateLimit", max: plan,
    });
  }
}
