import type { Redis } from "ioredis";

/**
 * Tells every node that a key changed, so each drops it from its cache. The store's change
 * feed already guarantees this within `cache.changePollMs`; a bus makes it milliseconds.
 */
export interface InvalidationBus {
  publish(hashes: readonly string[]): Promise<void>;
  /** Starts delivering other nodes' (and this node's) invalidations to `handler`. */
  subscribe(handler: (hash: string) => void): Promise<void>;
  close(): Promise<void>;
}

export interface RedisInvalidationOptions {
  /** Client for publishing (may be shared with the limiter). */
  redis: Redis;
  /** Channel name; default `keygate:invalidate`. Nodes of one cluster must agree. */
  channel?: string;
}

/**
 * Invalidation over Redis pub/sub: one PUBLISH per change, a dedicated subscriber connection
 * per node. Messages lost while a node is disconnected are covered by the change feed.
 *
 * @example
 * const bus = createRedisInvalidation({ redis });
 * const keygate = await createKeygate({ config, store, invalidation: bus });
 */
export function createRedisInvalidation(options: RedisInvalidationOptions): InvalidationBus {
  const channel = options.channel ?? "keygate:invalidate";
  let subscriber: Redis | null = null;
  return {
    async publish(hashes) {
      if (hashes.length > 0) await options.redis.publish(channel, hashes.join(","));
    },
    async subscribe(handler) {
      // Its own connection, queueing while disconnected and resubscribing after a reconnect;
      // without the client's command timeout, which could drop a (re)subscription mid-way.
      subscriber = options.redis.duplicate({ lazyConnect: false, enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
      subscriber.on("error", () => {}); // reconnects by itself; outages are reported by the limiter
      subscriber.on("message", (ch: string, message: string) => {
        if (ch !== channel) return;
        for (const hash of message.split(",")) if (hash) handler(hash);
      });
      // Not awaited: with Redis down at start-up the node still starts, and the change feed
      // covers invalidations until the subscription is up.
      subscriber.subscribe(channel).catch(() => {});
    },
    async close() {
      if (subscriber) subscriber.disconnect();
      subscriber = null;
    },
  };
}

/**
 * The in-memory bus: every Keygate instance of one process that was given a node of the same
 * hub sees the others' invalidations at once. For tests and for several instances sharing one
 * store in one process; across processes use Redis.
 *
 * @example
 * const hub = createMemoryInvalidationHub();
 * const a = await createKeygate({ config, store, invalidation: hub.node() });
 * const b = await createKeygate({ config, store, invalidation: hub.node() });
 */
export function createMemoryInvalidationHub(): { node(): InvalidationBus } {
  const handlers = new Set<(hash: string) => void>();
  return {
    node() {
      let mine: ((hash: string) => void) | null = null;
      return {
        async publish(hashes) { for (const h of hashes) for (const handler of handlers) handler(h); },
        async subscribe(handler) {
          if (mine) handlers.delete(mine);
          mine = handler;
          handlers.add(handler);
        },
        async close() {
          if (mine) handlers.delete(mine);
          mine = null;
        },
      };
    },
  };
}
