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

/** Room for the credential schemes of the gateway; `bearer` and a named header exist today. */
export const CredentialSchema = Type.Union([
  Type.Object({ type: Type.Literal("bearer") }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal("header"), name: Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }) }, { additionalProperties: false }),
]);

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
    errorStyle: Type.Union([Type.Literal("problem")], { default: "problem" }),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ default: "127.0.0.1" }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        bodyLimitBytes: Type.Integer({ minimum: 1024, maximum: 512 * 1024 * 1024, default: 10 * 1024 * 1024 }),
      },
      { additionalProperties: false, default: {} },
    ),
    security: Type.Object(
      { hashSecret: Type.Optional(Type.String({ description: "Pepper for HMAC-SHA-256 key hashes; empty for plain SHA-256." })) },
      { additionalProperties: false, default: {} },
    ),
    cache: Type.Object(
      {
        maxKeys: Type.Integer({ minimum: 0, maximum: 100_000_000, default: 1_000_000 }),
        negativeTtlSeconds: Type.Number({ minimum: 0, maximum: 3600, default: 10 }),
        maxStaleSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60, description: "How long cached keys keep verifying while the store's change feed cannot be read." }),
        changePollMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000, description: "How often to read key changes made by other processes sharing the store; 0 turns it off." }),
      },
      { additionalProperties: false, default: {} },
    ),
    usage: Type.Object(
      { flushIntervalMs: Type.Integer({ minimum: 10, maximum: 600_000, default: 1000 }) },
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
    apis: Type.Array(ApiSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);

export type RateLimitConfig = Static<typeof RateLimitSchema>;
export type LockoutConfig = Static<typeof LockoutSchema>;
export type ApiConfig = Static<typeof ApiSchema>;
export type KeygateConfig = Static<typeof ConfigSchema>;
