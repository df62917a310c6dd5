import { Type } from "@sinclair/typebox";
import type { TSchema } from "@sinclair/typebox";
import { RateLimitSchema } from "../config/schema.js";
import { VERDICT_CODES } from "../verify/codes.js";
import type { VerdictCode } from "../verify/codes.js";

/**
 * The admin API's request and response schemas. Fastify validates requests with them, and
 * /openapi.json is generated from the same objects, so the two cannot disagree.
 */
/** `schema` or null. */
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Id = (prefix: string) => Type.String({ pattern: `^${prefix}_[0-9A-Za-z]{1,60}$`, maxLength: 64, examples: [`${prefix}_0VbjE0Y2pcCFTlhfo2AltY`] });
const DateTime = Type.String({ format: "date-time", examples: ["2027-01-01T00:00:00Z"] });
const Metadata = Type.Record(Type.String(), Type.Unknown(), { maxProperties: 64, description: "Free-form JSON object stored with the key." });
const ScopeList = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 200 });
const Allowlist = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 1000, description: "IPv4/IPv6 addresses or CIDR ranges; empty allows every address." });

export const ProblemSchema = Type.Object({
  type: Type.String(), title: Type.String(), status: Type.Integer(), detail: Type.String(),
  code: Type.String({ description: "Stable error code; see docs/errors.md." }), requestId: Type.String(),
  errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), message: Type.String() }))),
}, { additionalProperties: true });

const AccountAllowlists = Type.Record(Type.String({ maxLength: 32 }), Allowlist, { maxProperties: 32, description: "IP allowlist per environment (e.g. sandbox, production); absent or empty allows every address." });

export const AccountSchema = Type.Object({
  id: Id("acc"), name: Type.String(), email: Type.String(), metadata: Metadata, ipAllowlists: AccountAllowlists, createdAt: DateTime, updatedAt: DateTime,
});

export const KeySchema = Type.Object({
  id: Id("key"), api: Type.String(), accountId: Type.String(), applicationId: Nullable(Type.String()),
  name: Nullable(Type.String()), environment: Type.String(),
  start: Nullable(Type.String({ description: "The key's non-secret head, e.g. ce_live_a1B2." })),
  status: Type.Union([Type.Literal("active"), Type.Literal("disabled"), Type.Literal("expired"), Type.Literal("revoked"), Type.Literal("rotating"), Type.Literal("rotated")]),
  scopes: Type.Array(Type.String()), ipAllowlist: Type.Array(Type.String()), expiresAt: Nullable(DateTime),
  rateLimit: Nullable(RateLimitSchema), enabled: Type.Boolean(), revokedAt: Nullable(DateTime), rotatedAt: Nullable(DateTime),
  graceEndsAt: Nullable(DateTime), replacedBy: Nullable(Type.String()), metadata: Metadata,
  source: Type.Union([Type.Literal("generated"), Type.Literal("imported")]), createdAt: DateTime, updatedAt: DateTime,
  lastUsedAt: Nullable(DateTime), usageCount: Type.Integer(),
});

export const CreatedKeySchema = Type.Composite([KeySchema, Type.Object({
  key: Type.String({ description: "The secret. Shown in this response only; keygate keeps just its hash." }),
})]);

export const VerdictSchema = Type.Object({
  valid: Type.Boolean(),
  code: Type.Union(VERDICT_CODES.map((c) => Type.Literal(c))) as unknown as TSchema & { static: VerdictCode },
  api: Type.String(),
  keyId: Type.Optional(Type.String()), accountId: Type.Optional(Type.String()), applicationId: Type.Optional(Nullable(Type.String())),
  name: Type.Optional(Nullable(Type.String())), environment: Type.Optional(Type.String()), scopes: Type.Optional(Type.Array(Type.String())),
  expiresAt: Type.Optional(Nullable(DateTime)), metadata: Type.Optional(Metadata),
  ratelimit: Type.Optional(Type.Object({
    limit: Type.Integer(), remaining: Type.Integer(), reset: Type.Integer({ description: "End of the window, Unix epoch seconds." }),
    window: Type.Integer({ description: "Window length in seconds." }),
  })),
  attemptsLeft: Type.Optional(Type.Integer()), retryAfter: Type.Optional(Type.Integer({ description: "Seconds." })),
  reset: Type.Optional(Type.Integer({ description: "When a retry can succeed (end of a block or of the rate-limit window), Unix epoch seconds; set with retryAfter." })),
  missingScopes: Type.Optional(Type.Array(Type.String())),
});

export const ApiSchemaView = Type.Object({
  id: Type.String(), name: Type.Optional(Type.String()),
  keyFormat: Type.Object({
    prefix: Type.String(), separator: Type.String(), environments: Type.Array(Type.String()), environmentInKey: Type.Boolean(),
    length: Type.Integer(), alphabet: Type.String(), checksum: Type.Boolean(), importPattern: Type.Optional(Type.String()),
    examples: Type.Record(Type.String(), Type.String(), { description: "The head a key of each environment starts with." }),
  }),
  scopes: Type.Array(Type.Object({ name: Type.String(), description: Type.Optional(Type.String()) })),
  defaultScopes: Type.Array(Type.String()),
  rateLimit: Nullable(RateLimitSchema),
  environmentRateLimits: Type.Record(Type.String(), RateLimitSchema),
  lockout: Type.Object({ enabled: Type.Boolean(), maxAttempts: Type.Integer(), windowSeconds: Type.Integer(), blockSeconds: Type.Integer() }),
});

const page = <T extends TSchema>(item: T) => Type.Object({ data: Type.Array(item), nextCursor: Nullable(Type.String()) });

export const CreateAccountBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  email: Type.String({ format: "email", maxLength: 320 }),
  metadata: Type.Optional(Metadata),
  ipAllowlists: Type.Optional(AccountAllowlists),
}, { additionalProperties: false });

export const UpdateAccountBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  metadata: Type.Optional(Metadata),
  ipAllowlists: Type.Optional(AccountAllowlists),
}, { additionalProperties: false, minProperties: 1 });

const keyFields = {
  name: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 200 }))),
  scopes: Type.Optional(ScopeList),
  ipAllowlist: Type.Optional(Allowlist),
  expiresAt: Type.Optional(Nullable(DateTime)),
  rateLimit: Type.Optional(Nullable(RateLimitSchema)),
  metadata: Type.Optional(Metadata),
};

export const CreateKeyBody = Type.Object({
  api: Type.String({ minLength: 1, maxLength: 64 }),
  accountId: Type.String({ minLength: 1, maxLength: 64 }),
  applicationId: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
  environment: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  ...keyFields,
}, { additionalProperties: false });

export const UpdateKeyBody = Type.Object({ ...keyFields, enabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false, minProperties: 1 });

export const RotateKeyBody = Type.Object({
  gracePeriodSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400, description: "How long the old key keeps working; default 0." })),
}, { additionalProperties: false });

/** Revoking takes no options; a body, if sent, must be empty so a misspelt option is not ignored. */
export const RevokeKeyBody = Type.Object({}, { additionalProperties: false });

/** One key to import; `keygate keys import` checks each row of its file against it too. */
export const ImportKeyItem = Type.Object({
  accountId: Type.String({ minLength: 1, maxLength: 64 }),
  key: Type.Optional(Type.String({ minLength: 1, maxLength: 512, description: "The existing secret, in plaintext." })),
  hash: Type.Optional(Type.String({ pattern: "^[0-9a-fA-F]{64}$", description: "Or its SHA-256 digest in hex." })),
  applicationId: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
  environment: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  ...keyFields,
}, { additionalProperties: false });

export const ImportKeysBody = Type.Object({
  api: Type.String({ minLength: 1, maxLength: 64 }),
  keys: Type.Array(ImportKeyItem, { minItems: 1, maxItems: 10_000 }),
}, { additionalProperties: false });

export const VerifyBody = Type.Object({
  api: Type.String({ minLength: 1, maxLength: 64 }),
  key: Type.String({ maxLength: 4096, description: "The presented key; empty gives MISSING_CREDENTIALS." }),
  ip: Type.Optional(Type.String({ maxLength: 64, description: "The client's address, for allowlists and the lockout." })),
  scopes: Type.Optional(ScopeList),
  identity: Type.Optional(Type.String({ maxLength: 320, description: "For identity + secret schemes: the account email the client claimed." })),
}, { additionalProperties: false });

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

// Out of range is an error, not a silent clamp: a client asking for 500 rows must learn it gets at most 100.
export const Limit = Type.String({ pattern: "^(?:[1-9][0-9]?|100)$", description: "Page size, 1 to 100; default 50." });
// A cursor is the id of the last row of the previous page; anything else would silently give an empty page.
export const Cursor = (prefix: string) => Type.String({ pattern: `^${prefix}_[0-9A-Za-z]{1,60}$`, maxLength: 64, description: "`nextCursor` of the previous page." });
export const ListKeysQuery = Type.Object({
  api: Type.Optional(Type.String({ maxLength: 64 })), accountId: Type.Optional(Type.String({ maxLength: 64 })),
  cursor: Type.Optional(Cursor("key")), limit: Type.Optional(Limit),
}, { additionalProperties: false });
export const ListAccountsQuery = Type.Object({
  cursor: Type.Optional(Cursor("acc")), limit: Type.Optional(Limit),
}, { additionalProperties: false });

/** A page size from a query string (`Limit` has already checked it). */
export const limitOf = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
export const KeyPage = page(KeySchema);
export const AccountPage = page(AccountSchema);
export const ImportResult = Type.Object({ imported: Type.Integer(), keys: Type.Array(KeySchema) });
export const RotateResult = Type.Object({ key: CreatedKeySchema, previous: KeySchema });
