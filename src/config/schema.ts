import { Type } from "@sinclair/typebox";
import type { Static } from "@sinclair/typebox";

/** A rate limit: at most `limit` requests per fixed window of `windowSeconds`, aligned to the epoch. */
export const RateLimitSchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: "Requests admitted per window." }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: 31_536_000, description: "Window length in seconds." }),
  },
  { additionalProperties: false },
);

const Identifier = Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$", description: "lower-case letters, digits, '.', '_' and '-'" });

export const KeyFormatSchema = Type.Object(
  {
    prefix: Type.String({ default: "", pattern: "^[A-Za-z0-9]{0,16}$", description: "Literal head of every key, e.g. `ce`." }),
    separator: Type.String({ default: "_", pattern: "^[_\\-.]?$" }),
    environments: Type.Array(Type.String({ pattern: "^[a-z][a-z0-9]{0,15}$" }), { minItems: 1, uniqueItems: true, default: ["live", "test"] }),
    environmentInKey: Type.Boolean({ default: true }),
    length: Type.Integer({ minimum: 8, maximum: 128, default: 32, description: "Body length, checksum included." }),
    alphabet: Type.Union([Type.Literal("base62"), Type.Literal("hex"), Type.Literal("uuid")], { default: "base62" }),
    checksum: Type.Boolean({ default: false }),
    importPattern: Type.Optional(Type.String({ minLength: 1, maxLength: 500, description: "Regex that imported keys of an older format match." })),
  },
  { additionalProperties: false, default: {} },
);

export const ScopeSchema = Type.Union([
  Type.String({ minLength: 1, maxLength: 100 }),
  Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }), description: Type.Optional(Type.String()) }, { additionalProperties: false }),
]);

export const LockoutSchema = Type.Object(
  {
    enabled: Type.Boolean({ default: true }),
    maxAttempts: Type.Integer({ minimum: 1, maximum: 10_000, default: 5 }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400 * 30, default: 900 }),
    blockSeconds: Type.Integer({ minimum: 1, maximum: 86_400 * 30, default: 900 }),
  },
  { additionalProperties: false, default: {} },
);

const HeaderName = Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" });

/** How clients present credentials to the gateway, forward-auth and middleware; tried in order. */
export const CredentialSchema = Type.Union([
  Type.Object({ type: Type.Literal("bearer") }, { additionalProperties: false, description: "Authorization: Bearer <key>" }),
  Type.Object({ type: Type.Literal("header"), name: HeaderName }, { additionalProperties: false, description: "A named header, e.g. X-Access-Token: <key>" }),
  Type.Object(
    { type: Type.Literal("identity"), identityHeader: HeaderName, secretHeader: HeaderName },
    { additionalProperties: false, description: "An identity header (the account's email) beside a secret header (its token)" },
  ),
  Type.Object(
    { type: Type.Literal("jwt") },
    { additionalProperties: false, description: "Authorization: Bearer <jwt>, a token minted by one of the API's token endpoints (needs `tokens`)" },
  ),
]);

export const ERROR_STYLES = ["problem", "airtime-v1", "airtime-v2", "topup"] as const;

/** Per-API renaming of verdict codes: the code, status and message clients see. */
export const ErrorCodeOverrideSchema = Type.Object(
  {
    code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    status: Type.Optional(Type.Integer({ minimum: 400, maximum: 599 })),
    message: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  },
  { additionalProperties: false },
);

/** A gateway route: which requests it matches and which scopes they need. */
export const RouteSchema = Type.Object(
  {
    methods: Type.Array(Type.String({ pattern: "^([A-Z]+|\\*)$" }), { minItems: 1, default: ["*"], description: "HTTP methods, or * for all" }),
    path: Type.String({ pattern: "^/", maxLength: 500, description: "/v2/balance, /orders/:id, /files/* (a trailing * matches the rest)" }),
    scopes: Type.Array(Type.String(), { default: [], description: "All of these are required" }),
    anyScopes: Type.Optional(Type.Array(Type.String(), { minItems: 1, description: "At least one of these is required" })),
    scopeFromBody: Type.Optional(Type.Object(
      { field: Type.String({ minLength: 1 }), map: Type.Record(Type.String(), Type.String()) },
      { additionalProperties: false, description: "Take the required scope from a JSON body field's value" },
    )),
    public: Type.Boolean({ default: false, description: "Forward without authentication" }),
  },
  { additionalProperties: false },
);

export const ApiSchema = Type.Object(
  {
    id: Identifier,
    name: Type.Optional(Type.String({ maxLength: 200 })),
    keyFormat: KeyFormatSchema,
    scopes: Type.Array(ScopeSchema, { default: [] }),
    defaultScopes: Type.Array(Type.String(), { default: [] }),
    rateLimit: Type.Optional(Type.Union([RateLimitSchema, Type.Null()])),
    environmentRateLimits: Type.Optional(Type.Record(Type.String(), RateLimitSchema)),
    lockout: LockoutSchema,
    credentials: Type.Array(CredentialSchema, { default: [{ type: "bearer" }], minItems: 1 }),
    errorStyle: Type.Union(ERROR_STYLES.map((s) => Type.Literal(s)), { default: "problem" }),
    errorCodes: Type.Optional(Type.Record(Type.String(), ErrorCodeOverrideSchema)),
    rateLimitHeaders: Type.Object(
      {
        xRateLimit: Type.Boolean({ default: true, description: "X-RateLimit-Limit / -Remaining / -Reset (epoch seconds)" }),
        ietf: Type.Boolean({ default: false, description: "IETF RateLimit and RateLimit-Policy fields" }),
      },
      { additionalProperties: false, default: {} },
    ),
    upstream: Type.Optional(Type.Union([
      Type.String({ pattern: "^https?://" }),
      Type.Record(Type.String(), Type.String({ pattern: "^https?://" }), { description: "One upstream per environment" }),
    ])),
    upstreamTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000 }),
    routes: Type.Optional(Type.Array(RouteSchema)),
    pathPrefix: Type.String({ default: "/", pattern: "^/", description: "Where the gateway serves this API on a shared port" }),
    features: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()), { description: "Application features and the scopes each grants (the payments seed)" })),
    tokens: Type.Optional(Type.Object(
      {
        ttlSeconds: Type.Integer({ minimum: 30, maximum: 86_400, default: 3600 }),
        algorithm: Type.Union([Type.Literal("EdDSA"), Type.Literal("ES256")], { default: "EdDSA" }),
        issuer: Type.String({ default: "keygate" }),
        endpoints: Type.Array(Type.Union([
          Type.Object({
            style: Type.Literal("clickpesa"),
            path: Type.String({ pattern: "^/" }),
            clientIdHeader: Type.String({ default: "client-id" }),
            apiKeyHeader: Type.String({ default: "api-key" }),
          }, { additionalProperties: false }),
          Type.Object({ style: Type.Literal("oauth2"), path: Type.String({ pattern: "^/" }) }, { additionalProperties: false }),
        ]), { minItems: 1 }),
      },
      { additionalProperties: false, description: "Client ID + API key exchanged for a short-lived JWT" },
    )),
    introspection: Type.Optional(Type.Object(
      {
        path: Type.String({ pattern: "^/" }),
        style: Type.Union([Type.Literal("keygate"), Type.Literal("oneclickdz")], { default: "keygate" }),
        scopeLabels: Type.Optional(Type.Record(Type.String(), Type.Array(Type.String()), { description: "A name for each scope set, e.g. READ-ONLY: [read]" })),
      },
      { additionalProperties: false, description: "An endpoint where a client checks its own key" },
    )),
  },
  { additionalProperties: false },
);

/** What to do with keys found in public code, and where GitHub's partner alerts come from. See docs/secret-scanning.md. */
export const SecretScanningSchema = Type.Object(
  {
    action: Type.Union([Type.Literal("revoke"), Type.Literal("flag")], {
      default: "revoke",
      description: "revoke: revoke a leaked key and record the leak in its metadata.leaked; flag: only record it",
    }),
    github: Type.Object(
      {
        enabled: Type.Boolean({ default: false, description: "Serve POST /secret-scanning/github for GitHub's secret-scanning partner alerts" }),
        publicKeysUrl: Type.String({
          pattern: "^https?://", default: "https://api.github.com/meta/public_keys/secret_scanning",
          description: "GitHub's published signing keys; on GitHub Enterprise Server, https://HOST/api/v3/meta/public_keys/secret_scanning",
        }),
        publicKeysToken: Type.Optional(Type.String({ description: "A GitHub token sent with the key request for a higher rate limit; empty for none" })),
        cacheSeconds: Type.Integer({ minimum: 0, maximum: 7 * 86_400, default: 3600, description: "How long the fetched keys are trusted before they are fetched again" }),
        refetchIntervalSeconds: Type.Integer({ minimum: 0, maximum: 3600, default: 60, description: "An unknown key id refetches the keys at most this often" }),
        timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ default: "127.0.0.1" }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        bodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 512 * 1024 * 1024, default: 10 * 1024 * 1024 }),
        gatewayPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535, description: "Serve gateway traffic on its own port; the admin API keeps `port`" })),
        trustedProxies: Type.Array(Type.String(), { default: [], description: "Addresses/CIDRs of proxies whose X-Forwarded-For is believed" }),
        shutdownTimeoutMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 25_000, description: "On SIGTERM/SIGINT, how long in-flight requests may take before they are cut off and usage is flushed" }),
      },
      { additionalProperties: false, default: {} },
    ),
    security: Type.Object(
      { hashSecret: Type.Optional(Type.String({ description: "Pepper for HMAC-SHA-256 key hashes; empty for plain SHA-256." })) },
      { additionalProperties: false, default: {} },
    ),
    cache: Type.Object(
      {
        maxKeys: Type.Integer({ minimum: 0, maximum: 100_000_000, default: 100_000, description: "Key records kept in memory; those not used for longest are dropped first." }),
        negativeTtlSeconds: Type.Number({ minimum: 0, maximum: 3600, default: 10 }),
        maxStaleSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60, description: "How long cached keys keep verifying while the store's change feed cannot be read." }),
        changePollMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000, description: "How often to read key changes made by other processes sharing the store; 0 turns it off." }),
      },
      { additionalProperties: false, default: {} },
    ),
    usage: Type.Object(
      { flushIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 5000, description: "How often usage counts (usageCount, lastUsedAt) are written to the store, in one batch. Reads on the same process include what is not written yet." }) },
      { additionalProperties: false, default: {} },
    ),
    analytics: Type.Object(
      {
        flushIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 1000, description: "How often usage events are written to the store, in one batch." }),
        maxQueue: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: "Raw request logs held between two flushes; beyond it they are sampled. Counts never are." }),
        rawLogSampling: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: "Fraction of requests kept as raw logs (default 1: all; 0: none). Aggregates count every request." })),
        retentionDays: Type.Integer({ minimum: 1, maximum: 3650, default: 30, description: "Days raw request logs are kept." }),
        minuteRetentionDays: Type.Integer({ minimum: 1, maximum: 3650, default: 7, description: "Days per-minute aggregates are kept." }),
        hourRetentionDays: Type.Integer({ minimum: 1, maximum: 3650, default: 90, description: "Days per-hour aggregates are kept." }),
        dayRetentionDays: Type.Integer({ minimum: 0, maximum: 36_500, default: 0, description: "Days per-day aggregates are kept; 0 keeps them forever." }),
        pruneIntervalMs: Type.Integer({ minimum: 1000, maximum: 86_400_000, default: 3_600_000, description: "How often expired logs and aggregates are deleted." }),
        heartbeatSeconds: Type.Integer({ minimum: 1, maximum: 300, default: 15, description: "Comment lines on idle /v1/events streams, so proxies keep them open." }),
      },
      { additionalProperties: false, default: {} },
    ),
    database: Type.Object(
      {
        url: Type.Optional(Type.String({ description: "postgres://… to use PostgreSQL; empty for SQLite in the data folder. KEYGATE_DATABASE_URL wins." })),
        maxConnections: Type.Integer({ minimum: 1, maximum: 1000, default: 10 }),
      },
      { additionalProperties: false, default: {} },
    ),
    redis: Type.Object(
      {
        url: Type.Optional(Type.String({ description: "redis://… for cluster-wide limits, lockouts and invalidation. KEYGATE_REDIS_URL wins." })),
        keyPrefix: Type.String({ default: "keygate:", pattern: "^[A-Za-z0-9:_.-]{0,64}$" }),
        failureMode: Type.Union([Type.Literal("closed"), Type.Literal("local")], { default: "closed" }),
      },
      { additionalProperties: false, default: {} },
    ),
    secretScanning: SecretScanningSchema,
    portal: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: "Serve the customer portal at /portal (docs/portal.md)." }),
        title: Type.String({ minLength: 1, maxLength: 100, default: "Developer portal", description: "The portal's name in its header and page titles." }),
        signUp: Type.Boolean({ default: true, description: "Anyone may sign up, creating an account and its first user; false: users are created with the root key (POST /v1/portal/users)." }),
        sessionTtlHours: Type.Number({ minimum: 0.25, maximum: 720, default: 12, description: "A session ends this long after sign-in, however active." }),
        operatorEmails: Type.Array(Type.String({ minLength: 3, maxLength: 320 }), { default: [], description: "Portal users with these emails are operators: they see every account. Such emails cannot sign up; create them with POST /v1/portal/users." }),
        operatorOnlyApis: Type.Array(Identifier, { default: [], description: "APIs whose credentials only operators issue, rotate and revoke (no self-service, as the v1 airtime seed)." }),
        lockout: Type.Object(
          {
            maxFailures: Type.Integer({ minimum: 1, maximum: 100, default: 5, description: "Wrong passwords in a row that lock a user's sign-in." }),
            lockMinutes: Type.Integer({ minimum: 1, maximum: 1440, default: 15 }),
          },
          { additionalProperties: false, default: {} },
        ),
        ipRateLimit: Type.Object(
          {
            limit: Type.Integer({ minimum: 1, maximum: 100_000, default: 20, description: "Sign-in, sign-up and password attempts per client IP per window (per node)." }),
            windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 300 }),
          },
          { additionalProperties: false, default: {} },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    apis: Type.Array(ApiSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type RateLimitConfig = Static<typeof RateLimitSchema>;
export type LockoutConfig = Static<typeof LockoutSchema>;
export type ApiConfig = Static<typeof ApiSchema>;
export type KeygateConfig = Static<typeof ConfigSchema>;
