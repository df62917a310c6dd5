import type { UsageFilter } from "../store/types.js";
import { eventView } from "./events.js";
import type { UsageEvent, UsageEventView } from "./events.js";

/** Receives matching events as they happen; `end` once, when the feed closes. */
export interface LiveSubscriber {
  event(view: UsageEventView): void;
  end(): void;
}

/**
 * Fan-out of events to live subscribers (the `/v1/events` stream). Publishing costs nothing
 * without subscribers; with them, each event is turned into its view once. A subscriber that
 * throws is dropped: it must never break the verification that published.
 */
export interface LiveFeed {
  subscribe(filter: UsageFilter, subscriber: LiveSubscriber): () => void;
  publish(event: UsageEvent): void;
  size(): number;
  /** Ends every subscription. */
  close(): void;
}

export const matchesFilter = (e: UsageEvent, f: UsageFilter): boolean =>
  (f.api === undefined || e.api === f.api) && (f.keyId === undefined || e.keyId === f.keyId) &&
  (f.accountId === undefined || e.accountId === f.accountId) && (f.applicationId === undefined || e.applicationId === f.applicationId) &&
  (f.environment === undefined || e.environment === f.environment) && (f.code === undefined || e.code === f.code);

export function createLiveFeed(): LiveFeed {
  const subscribers = new Map<LiveSubscriber, UsageFilter>();
  const drop = (s: LiveSubscriber): void => {
    if (!subscribers.delete(s)) return;
    try { s.end(); } catch { /* already gone */ }
  };
  return {
    subscribe(filter, subscriber) {
      subscribers.set(subscriber, { ...filter });
      return () => { subscribers.delete(subscriber); };
    },
    publish(event) {
      if (subscribers.size === 0) return;
      let view: UsageEventView | null = null;
      for (const [s, filter] of subscribers) {
        if (!matchesFilter(event, filter)) continue;
        view ??= eventView(event);
        try { s.event(view); } catch { drop(s); }
      }
    },
    size: () => subscribers.size,
    close() {
      for (const s of [...subscribers.keys()]) drop(s);
    },
  };
}
