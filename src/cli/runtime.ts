import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { loadConfigFile } from "../config/load.js";
import type { KeygateConfig } from "../config/schema.js";
import { createKeygate } from "../keygate.js";
import type { Keygate } from "../keygate.js";
import { ConfigError } from "../lib/errors.js";
import { createSqliteStore } from "../store/sqlite/index.js";
import { createPostgresStore } from "../store/postgres/index.js";
import type { Store } from "../store/types.js";
import { createRedisLockout, createRedisRateLimiter } from "../limits/redis/index.js";
import { withFailureMode } from "../limits/resilient.js";
import { createRedisInvalidation } from "../cluster/invalidation.js";
import type { KeygateMetrics } from "../ops/metrics.js";

export interface RuntimeOptions {
  config?: string | undefined;
  data?: string | undefined;
  /** Reports Redis outages and recoveries; the CLI's one-shot commands pass none. */
  logger?: Logger | undefined;
  metrics?: KeygateMetrics | undefined;
}

/** The keygate.yaml shipped with the package, used when none is given and ./keygate.yaml is absent. */
export const bundledConfig = (): string => join(dirname(fileURLToPath(import.meta.url)), "..", "..", "keygate.yaml");

/** Which config file to read: --config, then KEYGATE_CONFIG, then ./keygate.yaml, then the bundled example. */
export function resolveConfigPath(given: string | undefined): { path: string; bundled: boolean } {
  const explicit = given ?? process.env.KEYGATE_CONFIG;
  if (explicit) return { path: resolve(explicit), bundled: false };
  const local = resolve("keygate.yaml");
  if (existsSync(local)) return { path: local, bundled: false };
  return { path: bundledConfig(), bundled: true };
}

export const resolveDataDir = (given: string | undefined): string => resolve(given ?? process.env.KEYGATE_DATA_DIR ?? "data");

function openStore(config: KeygateConfig, dataDir: string): Store {
  const url = process.env.KEYGATE_DATABASE_URL || config.database.url;
  if (!url) return createSqliteStore({ filename: join(dataDir, "keygate.db") });
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError(`KEYGATE_DATABASE_URL / database.url: expected postgres://…, got ${JSON.stringify(url.replace(/\/\/[^@]*@/, "//…@"))}`);
  return createPostgresStore({ connectionString: url, maxConnections: config.database.maxConnections });
}

/** How long one Redis command may take before the failure mode applies; they normally take well under 1 ms. */
const REDIS_COMMAND_TIMEOUT_MS = 1000;

/** Connects to Redis, waiting up to 5 s; an unreachable Redis is then handled by the failure mode. */
async function openRedis(url: string, logger: Logger | undefined): Promise<Redis> {
  if (!/^rediss?:\/\//.test(url)) throw new ConfigError(`KEYGATE_REDIS_URL / redis.url: expected redis://…, got ${JSON.stringify(url.replace(/\/\/[^@]*@/, "//…@"))}`);
  // No offline queue: while Redis is away, calls fail at once and the failure mode decides,
  // instead of piling up behind a reconnect. A command timeout for a Redis that is there but
  // does not answer (hung, paused, or cut off without a reset): the connection stays open,
  // and without it every verification would wait for TCP to give up, hours later.
  const redis = new Redis(url, { enableAutoPipelining: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, commandTimeout: REDIS_COMMAND_TIMEOUT_MS, lazyConnect: true });
  redis.on("error", () => {});
  try {
    await Promise.race([redis.connect(), new Promise((_, reject) => setTimeout(() => reject(new Error("timed out after 5 s")), 5000).unref())]);
  } catch (e) {
    logger?.warn({ err: (e as Error).message }, "Redis is not reachable yet; limits follow redis.failureMode until it is");
  }
  return redis;
}

/** Opens the configured keygate: SQLite in the data folder, or PostgreSQL, plus Redis when set. */
export async function openKeygate(options: RuntimeOptions): Promise<{ keygate: Keygate; config: KeygateConfig; configPath: string; bundled: boolean; dataDir: string; redis: Redis | null }> {
  const { path, bundled } = resolveConfigPath(options.config);
  const config = loadConfigFile(path);
  const dataDir = resolveDataDir(options.data);
  const store = openStore(config, dataDir);
  const redisUrl = process.env.KEYGATE_REDIS_URL || config.redis.url;
  if (!redisUrl) {
    const keygate = await createKeygate({ config, store, ...(options.metrics ? { metrics: options.metrics } : {}) });
    return { keygate, config, configPath: path, bundled, dataDir, redis: null };
  }
  const redis = await openRedis(redisUrl, options.logger);
  const keyPrefix = config.redis.keyPrefix;
  const { limiter, lockout } = withFailureMode(createRedisRateLimiter({ redis, keyPrefix }), createRedisLockout({ redis, keyPrefix }), config.redis.failureMode, {
    onStateChange: (state, error) => options.logger?.[state === "degraded" ? "error" : "info"]({ err: error ? (error as Error).message : undefined, failureMode: config.redis.failureMode }, `Redis limits ${state}`),
  });
  const keygate = await createKeygate({
    config, store, limiter, lockout, ...(options.metrics ? { metrics: options.metrics } : {}),
    invalidation: createRedisInvalidation({ redis, channel: `${keyPrefix}invalidate` }),
    onBackgroundError: (e) => options.logger?.warn({ err: (e as Error).message }, "background task failed; will retry"),
  });
  const close = keygate.close.bind(keygate);
  keygate.close = async () => { await close(); redis.disconnect(); };
  return { keygate, config, configPath: path, bundled, dataDir, redis };
}
