/**
 * keygate: API-key authentication for API providers, in-process — embedded on SQLite, or on
 * the PostgreSQL and Redis a cluster of keygate services shares (docs/middleware.md).
 *
 * The PostgreSQL, Redis and Prometheus adapters load their drivers (pg, ioredis, prom-client)
 * when first created, not when this module is imported.
 *
 * @example
 * import { createKeygate, createSqliteStore, loadConfigFile } from "keygate";
 * const keygate = await createKeygate({ config: loadConfigFile("keygate.yaml"), store: createSqliteStore({ filename: "data/keygate.db" }) });
 */
export { createKeygate, keyStatus } from "./keygate.js";
export type { Keygate, CreateKeygateOptions, KeyView, CreatedKey, AccountView, CreateKeyInput, UpdateKeyInput, ImportKeyInput, Page, KeyStatus, ApplicationView, CreateApplicationInput, UpdateApplicationInput } from "./keygate.js";
export type { IssueTokenInput, IssuedToken, VerifyTokenInput } from "./tokens/service.js";
export type { SigningAlgorithm, SigningKeyView } from "./tokens/signing.js";
export type { Verdict, VerifyRequest, RateLimitInfo } from "./verify/engine.js";
export { VERDICT_CODES, VERDICT_STATUS, VERDICT_MESSAGES } from "./verify/codes.js";
export type { VerdictCode } from "./verify/codes.js";
export { parseConfig, loadConfigFile } from "./config/load.js";
export type { KeygateConfig, ApiConfig, RateLimitConfig, LockoutConfig } from "./config/schema.js";
export { createKeyCodec } from "./keys/format.js";
export type { KeyFormat, KeyCodec, ParsedKey } from "./keys/format.js";
export { createMemoryStore } from "./store/memory/index.js";
export type { MemoryStoreOptions } from "./store/memory/index.js";
export { createSqliteStore } from "./store/sqlite/index.js";
export { createPostgresStore } from "./store/postgres/index.js";
export type { PostgresStoreOptions } from "./store/postgres/index.js";
export type { Store, KeyRecord, Account, Application } from "./store/types.js";
export { createMemoryRateLimiter, createMemoryLockout } from "./limits/memory/index.js";
export { createRedisRateLimiter, createRedisLockout } from "./limits/redis-deferred.js";
export type { RedisLimitsOptions } from "./limits/redis/index.js";
export { withFailureMode } from "./limits/resilient.js";
export type { LimiterFailureMode, ResilienceEvents } from "./limits/resilient.js";
export { createRedisInvalidation, createMemoryInvalidationHub } from "./cluster/invalidation.js";
export type { InvalidationBus, RedisInvalidationOptions } from "./cluster/invalidation.js";
export { createMetrics } from "./ops/metrics.js";
export type { KeygateMetrics } from "./ops/metrics.js";
export type { RateLimiter, RateLimitVerdict, Lockout, LockoutPolicy, LockoutState } from "./limits/types.js";
export { createManualClock, systemClock } from "./lib/clock.js";
export type { Clock, ManualClock } from "./lib/clock.js";
export { KeygateError, ConfigError } from "./lib/errors.js";
