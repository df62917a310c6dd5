/**
 * `keygate/client`: a typed client of the keygate service's admin and verify API, built on
 * `fetch` alone, for Node, Bun, Deno, browsers and edge runtimes. See docs/client.md.
 *
 * @example
 * import { createKeygateClient } from "keygate/client";
 *
 * const keygate = createKeygateClient({ baseUrl: "http://127.0.0.1:8080", rootKey: process.env.KEYGATE_ROOT_KEY! });
 * const account = await keygate.accounts.create({ name: "Acme", email: "dev@acme.test" });
 * const { key } = await keygate.keys.create({ api: "payments", accountId: account.id, scopes: ["charges.read"] });
 * const verdict = await keygate.keys.verify({ api: "payments", key, ip: "203.0.113.7", scopes: ["charges.read"] });
 * if (!verdict.valid) console.log(verdict.code);
 */
import { createTransport } from "./transport.js";
import { streamEvents } from "./events.js";
import type { StreamEvent, StreamOptions } from "./events.js";
import type { OperationKey } from "./operations.js";
import type { Call, RequestOptions, TransportOptions } from "./transport.js";
import type {
  Account, Analytics, AnalyticsQuery, Api, Application, BodyOf, ResponseOf, CreateAccountInput, CreateApplicationInput, CreateKeyInput,
  CreatedKey, EventsFilter, ImportKeysInput, ImportedKeys, Key, KeyUsage, ListAccountsQuery, ListApplicationsQuery, ListKeysQuery,
  ListLogsQuery, Page, PagePromise, RequestLog, RotateKeyInput, RotatedKey, SecretPattern, SigningAlgorithm, SigningKey,
  UpdateAccountInput, UpdateApplicationInput, UpdateKeyInput, Verdict, VerifyInput,
} from "./types.js";

export { KeygateApiError, KeygateNetworkError } from "./errors.js";
export type { FieldError, KeygateErrorCode } from "./errors.js";
export { OPERATIONS } from "./operations.js";
export type { OperationKey } from "./operations.js";
export type { RequestOptions } from "./transport.js";
export type { StreamEvent, StreamOptions } from "./events.js";
export type * from "./types.js";

/** How to reach the service, and how patiently. */
export type KeygateClientOptions = TransportOptions;

/**
 * The admin and verify API. Every method takes an optional last argument of
 * {@link RequestOptions} (`signal`, `timeoutMs`, `requestId`). Errors are
 * `KeygateApiError` (the service answered with a problem document) or `KeygateNetworkError`
 * (no answer); a denied key is a verdict, not an error.
 *
 * @example
 * const page = await keygate.keys.list({ accountId, limit: 20 });            // one page
 * for await (const key of keygate.keys.list({ accountId })) console.log(key.id); // every key
 * await keygate.keys.revoke(key.id, { signal: AbortSignal.timeout(2000), requestId: "req_ops_1" });
 * for await (const item of keygate.events.stream({ api: "payments" }, { signal })) {
 *   if (item.type === "usage") console.log(item.data.code, item.data.keyId);
 * }
 */
export interface KeygateClient {
  apis: {
    /** The APIs declared in the service's config. */
    list(options?: RequestOptions): Promise<Api[]>;
    /** The regular expressions that find the API's keys in public code (docs/secret-scanning.md). */
    secretPattern(api: string, options?: RequestOptions): Promise<SecretPattern>;
  };
  accounts: {
    create(input: CreateAccountInput, options?: RequestOptions): Promise<Account>;
    get(id: string, options?: RequestOptions): Promise<Account>;
    /** `ipAllowlists` merges per environment: named environments are replaced, an empty list clears one. */
    update(id: string, input: UpdateAccountInput, options?: RequestOptions): Promise<Account>;
    /** One page, or with `for await` every account. */
    list(query?: ListAccountsQuery, options?: RequestOptions): PagePromise<Account>;
  };
  applications: {
    create(input: CreateApplicationInput, options?: RequestOptions): Promise<Application>;
    get(id: string, options?: RequestOptions): Promise<Application>;
    /** Changing `features` changes the scopes of the application's keys at once. */
    update(id: string, input: UpdateApplicationInput, options?: RequestOptions): Promise<Application>;
    list(query?: ListApplicationsQuery, options?: RequestOptions): PagePromise<Application>;
  };
  keys: {
    /** The answer's `key` is the secret, shown here only: hand it to its owner and drop it. */
    create(input: CreateKeyInput, options?: RequestOptions): Promise<CreatedKey>;
    get(id: string, options?: RequestOptions): Promise<Key>;
    update(id: string, input: UpdateKeyInput, options?: RequestOptions): Promise<Key>;
    /** Oldest first; one page, or with `for await` every key. */
    list(query?: ListKeysQuery, options?: RequestOptions): PagePromise<Key>;
    /** Takes effect on the next verification; revoking a revoked key answers it unchanged. */
    revoke(id: string, options?: RequestOptions): Promise<Key>;
    /** A successor with the same settings; the old key works for `gracePeriodSeconds` more. */
    rotate(id: string, input?: RotateKeyInput, options?: RequestOptions): Promise<RotatedKey>;
    /** Existing secrets or their SHA-256 hashes, all or nothing. */
    import(input: ImportKeysInput, options?: RequestOptions): Promise<ImportedKeys>;
    /** A verdict for a presented key; `valid: false` with a stable `code` when denied. */
    verify(input: VerifyInput, options?: RequestOptions): Promise<Verdict>;
    /** Requests used and remaining in the key's current rate-limit window (read without consuming), and its usage count. */
    usage(id: string, options?: RequestOptions): Promise<KeyUsage>;
  };
  analytics: {
    /**
     * Counts, successes, errors by code and latency percentiles per minute, hour or day,
     * optionally one series per key, application, account or api. Exact, but written in
     * batches: a verification shows here within the service's `analytics.flushIntervalMs`.
     */
    query(query?: AnalyticsQuery, options?: RequestOptions): Promise<Analytics>;
  };
  logs: {
    /** Raw request logs, newest first; one page, or with `for await` every log. May be sampled under a flood. */
    list(query?: ListLogsQuery, options?: RequestOptions): PagePromise<RequestLog>;
    get(id: string, options?: RequestOptions): Promise<RequestLog>;
  };
  events: {
    /**
     * Verifications as they happen (`GET /v1/events`, server-sent events), filtered: an async
     * iterable that connects when the loop starts, reconnects when the connection is lost, and
     * ends when the loop is left or `signal` aborts. See {@link StreamEvent}.
     */
    stream(filter?: EventsFilter, options?: StreamOptions): AsyncGenerator<StreamEvent, void, undefined>;
  };
  signingKeys: {
    list(options?: RequestOptions): Promise<SigningKey[]>;
    /** A new key signs from now on; the old one stays published until its tokens expire. */
    rotate(algorithm?: SigningAlgorithm, options?: RequestOptions): Promise<SigningKey>;
  };
}

/**
 * A list call as a promise of its first page that is also an async iterable over every item:
 * the next page is fetched when the loop has consumed the previous one.
 */
function pagePromise<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>, cursor: string | undefined): PagePromise<T> {
  const first = fetchPage(cursor);
  async function* items(): AsyncGenerator<T> {
    for (let page = await first; ; page = await fetchPage(page.nextCursor)) {
      yield* page.data;
      if (page.nextCursor === null) return;
    }
  }
  return Object.assign(first, { [Symbol.asyncIterator]: items });
}

/**
 * A client of the keygate service at `baseUrl`, authenticated with the root key.
 *
 * GETs, `keys.verify` and `keys.revoke` are retried on 5xx, network errors and timeouts
 * (`retries`, default 2, with exponential backoff and full jitter, honouring `Retry-After`);
 * calls that create or rotate are sent once. The table is `OPERATIONS`.
 *
 * @example
 * const keygate = createKeygateClient({ baseUrl: "https://keygate.internal", rootKey, timeoutMs: 2000 });
 * for await (const key of keygate.keys.list({ api: "payments", accountId })) console.log(key.id, key.status);
 */
export function createKeygateClient(options: KeygateClientOptions): KeygateClient {
  if (!options.baseUrl || !URL.canParse(options.baseUrl)) throw new TypeError(`keygate client: baseUrl must be an absolute URL such as http://127.0.0.1:8080 (got ${JSON.stringify(options.baseUrl)})`);
  if (!options.rootKey) throw new TypeError("keygate client: rootKey is required (the key keygate printed on first start, or KEYGATE_ROOT_KEY)");
  const send = createTransport(options);
  // Typed by the operation: a method whose answer or body disagrees with the document fails to compile.
  const call = <K extends OperationKey>(c: Call & { op: K; body?: BodyOf<K> }, o: RequestOptions | undefined): Promise<ResponseOf<K>> => send(c, o);
  const id = (value: string) => ({ id: value });

  return {
    apis: {
      list: async (o) => (await call({ op: "GET /v1/apis" }, o)).data,
      secretPattern: (apiId, o) => call({ op: "GET /v1/apis/{id}/secret-pattern", params: id(apiId) }, o),
    },
    accounts: {
      create: (input, o) => call({ op: "POST /v1/accounts", body: input }, o),
      get: (accountId, o) => call({ op: "GET /v1/accounts/{id}", params: id(accountId) }, o),
      update: (accountId, input, o) => call({ op: "PATCH /v1/accounts/{id}", params: id(accountId), body: input }, o),
      list: (query = {}, o) => pagePromise((cursor) => call({ op: "GET /v1/accounts", query: { ...query, cursor } }, o), query.cursor),
    },
    applications: {
      create: (input, o) => call({ op: "POST /v1/applications", body: input }, o),
      get: (appId, o) => call({ op: "GET /v1/applications/{id}", params: id(appId) }, o),
      update: (appId, input, o) => call({ op: "PATCH /v1/applications/{id}", params: id(appId), body: input }, o),
      list: (query = {}, o) => pagePromise((cursor) => call({ op: "GET /v1/applications", query: { ...query, cursor } }, o), query.cursor),
    },
    keys: {
      create: (input, o) => call({ op: "POST /v1/keys", body: input }, o),
      get: (keyId, o) => call({ op: "GET /v1/keys/{id}", params: id(keyId) }, o),
      update: (keyId, input, o) => call({ op: "PATCH /v1/keys/{id}", params: id(keyId), body: input }, o),
      list: (query = {}, o) => pagePromise((cursor) => call({ op: "GET /v1/keys", query: { ...query, cursor } }, o), query.cursor),
      revoke: (keyId, o) => call({ op: "POST /v1/keys/{id}/revoke", params: id(keyId) }, o),
      rotate: (keyId, input, o) => call({ op: "POST /v1/keys/{id}/rotate", params: id(keyId), body: input }, o),
      import: (input, o) => call({ op: "POST /v1/keys/import", body: input }, o),
      verify: (input, o) => call({ op: "POST /v1/keys/verify", body: input }, o),
      usage: (keyId, o) => call({ op: "GET /v1/keys/{id}/usage", params: id(keyId) }, o),
    },
    analytics: {
      query: (query = {}, o) => call({ op: "GET /v1/analytics", query }, o),
    },
    logs: {
      list: (query = {}, o) => pagePromise((cursor) => call({ op: "GET /v1/logs", query: { ...query, cursor } }, o), query.cursor),
      get: (logId, o) => call({ op: "GET /v1/logs/{id}", params: id(logId) }, o),
    },
    events: {
      stream: (filter, o) => streamEvents(options, filter, o),
    },
    signingKeys: {
      list: async (o) => (await call({ op: "GET /v1/signing-keys" }, o)).data,
      rotate: (algorithm, o) => call({ op: "POST /v1/signing-keys/rotate", body: algorithm === undefined ? {} : { algorithm } }, o),
    },
  };
}
