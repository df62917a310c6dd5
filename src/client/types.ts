/**
 * The SDK's request and response types, each read out of the generated ./openapi.ts, so a
 * field added, renamed or retyped on the server shows up here after regeneration, and a
 * client compiled against an outdated copy fails to type-check instead of failing at run time.
 */
import type { paths } from "./openapi.js";
import type { OperationKey } from "./operations.js";

type Method = "get" | "post" | "patch";

/** The OpenAPI operation object behind `"GET /v1/keys/{id}"`. */
export type OperationOf<K extends OperationKey> = K extends `${infer M} ${infer P}`
  ? P extends keyof paths
    ? Lowercase<M> extends Method
      ? NonNullable<paths[P][Lowercase<M>]>
      : never
    : never
  : never;

type JsonOf<T> = T extends { content: { "application/json": infer B } } ? B : never;

/** The JSON body of an operation's success response (200 or 201). */
export type ResponseOf<K extends OperationKey> = OperationOf<K> extends { responses: infer R }
  ? JsonOf<R[Extract<keyof R, 200 | 201>]>
  : never;

/** The JSON request body of an operation. */
export type BodyOf<K extends OperationKey> = OperationOf<K> extends { requestBody?: infer B } ? JsonOf<NonNullable<B>> : never;

/** The query parameters of an operation, `limit` as a number (the wire carries strings). */
export type QueryOf<K extends OperationKey> = OperationOf<K> extends { parameters: { query?: infer Q } }
  ? [NonNullable<Q>] extends [never] ? never : Omit<NonNullable<Q>, "limit"> & ("limit" extends keyof NonNullable<Q> ? { limit?: number } : unknown)
  : never;

/** An API declared in the service's config, with its key format, scopes and limits. */
export type Api = ResponseOf<"GET /v1/apis">["data"][number];
/** The regular expressions that find an API's keys in public code (GitHub, gitleaks, trufflehog). */
export type SecretPattern = ResponseOf<"GET /v1/apis/{id}/secret-pattern">;

/** One of your customers. */
export type Account = ResponseOf<"GET /v1/accounts/{id}">;
export type CreateAccountInput = BodyOf<"POST /v1/accounts">;
export type UpdateAccountInput = BodyOf<"PATCH /v1/accounts/{id}">;
export type ListAccountsQuery = QueryOf<"GET /v1/accounts">;

/** An account's application: features that grant scopes, and a Client ID for token endpoints. */
export type Application = ResponseOf<"GET /v1/applications/{id}">;
export type CreateApplicationInput = BodyOf<"POST /v1/applications">;
export type UpdateApplicationInput = BodyOf<"PATCH /v1/applications/{id}">;
export type ListApplicationsQuery = QueryOf<"GET /v1/applications">;

/** A key as the admin API shows it: everything but the secret. */
export type Key = ResponseOf<"GET /v1/keys/{id}">;
/** A key just created or rotated in: the only place its secret `key` ever appears. */
export type CreatedKey = ResponseOf<"POST /v1/keys">;
export type CreateKeyInput = BodyOf<"POST /v1/keys">;
export type UpdateKeyInput = BodyOf<"PATCH /v1/keys/{id}">;
export type ListKeysQuery = QueryOf<"GET /v1/keys">;
export type RotateKeyInput = BodyOf<"POST /v1/keys/{id}/rotate">;
export type RotatedKey = ResponseOf<"POST /v1/keys/{id}/rotate">;
export type ImportKeysInput = BodyOf<"POST /v1/keys/import">;
export type ImportKeyInput = ImportKeysInput["keys"][number];
export type ImportedKeys = ResponseOf<"POST /v1/keys/import">;

/** What to verify: a presented key for one API, from one client, needing some scopes. */
export type VerifyInput = BodyOf<"POST /v1/keys/verify">;
/** The answer to a verification; a denied key is a verdict (`valid: false`), not an error. */
export type Verdict = ResponseOf<"POST /v1/keys/verify">;
export type VerdictCode = Verdict["code"];

/** A JWT signing key (public data only). */
export type SigningKey = ResponseOf<"GET /v1/signing-keys">["data"][number];
export type SigningAlgorithm = NonNullable<BodyOf<"POST /v1/signing-keys/rotate">["algorithm"]>;

/** A key's live rate-limit window (read without consuming from it) and lifetime usage. */
export type KeyUsage = ResponseOf<"GET /v1/keys/{id}/usage">;

/** Usage aggregates: one series of buckets per group, with totals. */
export type Analytics = ResponseOf<"GET /v1/analytics">;
export type AnalyticsQuery = QueryOf<"GET /v1/analytics">;
/** One group's totals and buckets. */
export type AnalyticsSeries = Analytics["data"][number];

/** One stored request log: a verification with its `log_…` id. */
export type RequestLog = ResponseOf<"GET /v1/logs/{id}">;
/** Newest first. `status` is an HTTP status (the wire carries it as a string). */
export type ListLogsQuery = Omit<QueryOf<"GET /v1/logs">, "status"> & { status?: number };

/**
 * Which verifications the live stream carries; every field narrows it. The stream's events
 * are the log's records without an id (they are sent before, and whether or not, a log is kept).
 */
export type EventsFilter = NonNullable<OperationOf<"GET /v1/events">["parameters"]["query"]>;
/** One verification as it happens, from `GET /v1/events`. */
export type UsageEvent = Omit<RequestLog, "id">;

/** One page of a list; pass `nextCursor` as `cursor` for the next, null on the last page. */
export interface Page<T> {
  data: T[];
  nextCursor: string | null;
}

/**
 * A list call: await it for one page, or iterate it with `for await` for every item of every
 * page, fetched a page at a time as the loop reaches it.
 */
export type PagePromise<T> = Promise<Page<T>> & AsyncIterable<T>;
