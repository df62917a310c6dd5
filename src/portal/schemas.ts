import { Type } from "@sinclair/typebox";
import { RateLimitSchema } from "../config/schema.js";
import { Nullable } from "../http/schemas.js";

/**
 * Request schemas of the portal's JSON API (/portal/api) and of the root key's
 * /v1/portal/users. Fastify validates every body and query with them before a handler runs.
 */
const Ref = Type.String({ minLength: 1, maxLength: 64 });
const Email = Type.String({ minLength: 3, maxLength: 320 });
/** Long enough for any passphrase; the rules for new ones are in password.ts. */
const Password = Type.String({ minLength: 1, maxLength: 1024 });
const DateTime = Type.String({ format: "date-time" });
const Allowlist = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 1000 });

export const SignUpBody = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200, description: "The person's name." }),
  company: Type.String({ minLength: 1, maxLength: 200, description: "The account's name." }),
  email: Email,
  password: Password,
}, { additionalProperties: false });

export const SignInBody = Type.Object({ email: Email, password: Password }, { additionalProperties: false });

export const ChangePasswordBody = Type.Object({ currentPassword: Password, newPassword: Password }, { additionalProperties: false });

export const AccountParams = Type.Object({ accountId: Ref });
export const KeyParams = Type.Object({ accountId: Ref, keyId: Ref });
export const ApplicationParams = Type.Object({ accountId: Ref, applicationId: Ref });
export const LogParams = Type.Object({ accountId: Ref, logId: Ref });

export const CreateAccountBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }), email: Email }, { additionalProperties: false });

export const ListAccountsQuery = Type.Object({ cursor: Type.Optional(Ref) }, { additionalProperties: false });

export const IpAllowlistsBody = Type.Object({
  ipAllowlists: Type.Record(Type.String({ pattern: "^[a-z][a-z0-9]{0,15}$" }), Allowlist, { maxProperties: 32 }),
}, { additionalProperties: false });

export const CreateApplicationBody = Type.Object({
  api: Ref,
  name: Type.String({ minLength: 1, maxLength: 200 }),
  integrationType: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  features: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 })),
}, { additionalProperties: false });

export const UpdateApplicationBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  integrationType: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  features: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 })),
}, { additionalProperties: false, minProperties: 1 });

export const ListKeysQuery = Type.Object({ applicationId: Type.Optional(Ref) }, { additionalProperties: false });

export const CreateKeyBody = Type.Object({
  api: Ref,
  applicationId: Type.Optional(Nullable(Ref)),
  name: Type.String({ minLength: 1, maxLength: 200 }),
  environment: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  scopes: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 200 })),
  ipAllowlist: Type.Optional(Allowlist),
  expiresAt: Type.Optional(Nullable(DateTime)),
  rateLimit: Type.Optional(Nullable(RateLimitSchema)),
  password: Password,
}, { additionalProperties: false });

export const RotateKeyBody = Type.Object({
  gracePeriodSeconds: Type.Integer({ minimum: 0, maximum: 30 * 86_400 }),
  password: Password,
}, { additionalProperties: false });

export const EmptyBody = Type.Object({}, { additionalProperties: false });

const filterFields = {
  api: Type.Optional(Ref),
  keyId: Type.Optional(Ref),
  applicationId: Type.Optional(Ref),
  environment: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
};

export const AnalyticsQuery = Type.Object({
  interval: Type.Optional(Type.Union([Type.Literal("minute"), Type.Literal("hour"), Type.Literal("day")])),
  groupBy: Type.Optional(Type.Union([Type.Literal("key"), Type.Literal("application")])),
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  ...filterFields,
}, { additionalProperties: false });

export const LogsQuery = Type.Object({
  ...filterFields,
  code: Type.Optional(Type.String({ pattern: "^[A-Z][A-Z0-9_]{0,63}$" })),
  status: Type.Optional(Type.String({ pattern: "^[1-5][0-9]{2}$" })),
  from: Type.Optional(DateTime),
  to: Type.Optional(DateTime),
  cursor: Type.Optional(Type.String({ pattern: "^log_[0-9A-Za-z]{8,60}$" })),
  limit: Type.Optional(Type.String({ pattern: "^(?:[1-9][0-9]?|100)$" })),
}, { additionalProperties: false });

export const EventsQuery = Type.Object({ keyId: Type.Optional(Ref), applicationId: Type.Optional(Ref) }, { additionalProperties: false });

// ---- /v1/portal/users (root key) ----

export const PortalUserSchema = Type.Object({
  id: Type.String({ examples: ["usr_0VbjE0Y2pcCFTlhfo2AltY"] }),
  email: Type.String(),
  name: Type.String(),
  accountId: Nullable(Type.String()),
  operator: Type.Boolean({ description: "Sees every account in the portal and provisions credentials for them." }),
  createdAt: Type.String({ format: "date-time" }),
  lastSignInAt: Nullable(Type.String({ format: "date-time" })),
});

export const CreatePortalUserBody = Type.Object({
  email: Email,
  password: Type.String({ minLength: 10, maxLength: 200, description: "At least 10 characters; the user can change it in the portal." }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  accountId: Type.Optional(Nullable(Ref)),
  operator: Type.Optional(Type.Boolean({ default: false })),
}, { additionalProperties: false });

export const UpdatePortalUserBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  password: Type.Optional(Type.String({ minLength: 10, maxLength: 200, description: "Sets a new password and ends the user's sessions." })),
  operator: Type.Optional(Type.Boolean()),
}, { additionalProperties: false, minProperties: 1 });

export const ListPortalUsersQuery = Type.Object({
  accountId: Type.Optional(Ref),
  cursor: Type.Optional(Ref),
  limit: Type.Optional(Type.String({ pattern: "^(?:[1-9][0-9]?|100)$" })),
}, { additionalProperties: false });

export const PortalUserParams = Type.Object({ id: Ref });
