/**
 * Every operation of the admin and verify API that the SDK calls, as `METHOD /path` in the
 * spelling of /openapi.json, with whether a failed attempt may be sent again.
 *
 * The table is the one place the retry policy lives. A call is retried only when sending it
 * twice cannot leave a different state than sending it once:
 *
 * - every `GET` (`GET /v1/events` is a stream: the client reconnects it, see ./events.ts);
 * - `POST /v1/keys/verify`: it changes no key, account or setting. A retry of an attempt that
 *   did reach the service is counted again — one more unit of the key's rate limit, one more
 *   usage event and, for a failing key, one more failed attempt towards the client's IP
 *   lockout. Each errs on the side of refusing, never of admitting, so the retry is allowed.
 * - `POST /v1/keys/{id}/revoke`: revoking a revoked key changes nothing and answers the key.
 *
 * Never retried: creating (a second account, key or application), rotating (the first
 * attempt's new secret would be lost and the second refused with KEY_NOT_ROTATABLE),
 * importing (DUPLICATE_KEY), `PATCH` (a retry landing after someone else's change would undo
 * it) and rotating the signing key.
 *
 * scripts/gen-client-types.ts generates src/client/openapi.ts from these operations only, and
 * test/client/openapi.test.ts fails when that file no longer matches the live document.
 *
 * @example
 * OPERATIONS["POST /v1/keys/verify"].retry; // true
 */
export const OPERATIONS = {
  "GET /v1/apis": { retry: true },
  "GET /v1/apis/{id}/secret-pattern": { retry: true },
  "POST /v1/accounts": { retry: false },
  "GET /v1/accounts": { retry: true },
  "GET /v1/accounts/{id}": { retry: true },
  "PATCH /v1/accounts/{id}": { retry: false },
  "POST /v1/applications": { retry: false },
  "GET /v1/applications": { retry: true },
  "GET /v1/applications/{id}": { retry: true },
  "PATCH /v1/applications/{id}": { retry: false },
  "POST /v1/keys": { retry: false },
  "GET /v1/keys": { retry: true },
  "GET /v1/keys/{id}": { retry: true },
  "PATCH /v1/keys/{id}": { retry: false },
  "POST /v1/keys/{id}/revoke": { retry: true },
  "POST /v1/keys/{id}/rotate": { retry: false },
  "POST /v1/keys/import": { retry: false },
  "POST /v1/keys/verify": { retry: true },
  "GET /v1/signing-keys": { retry: true },
  "POST /v1/signing-keys/rotate": { retry: false },
  "GET /v1/keys/{id}/usage": { retry: true },
  "GET /v1/analytics": { retry: true },
  "GET /v1/logs": { retry: true },
  "GET /v1/logs/{id}": { retry: true },
  "GET /v1/events": { retry: true },
} as const satisfies Record<string, { retry: boolean }>;

/** `"GET /v1/keys/{id}"` and the like. */
export type OperationKey = keyof typeof OPERATIONS;
