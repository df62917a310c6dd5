import { Type } from "@sinclair/typebox";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../../keygate.js";
import {
  AccountPage, AccountSchema, ApiSchemaView, CreateAccountBody, CreateKeyBody, CreatedKeySchema, IdParams, ImportKeysBody,
  ImportResult, KeyPage, KeySchema, ListAccountsQuery, ListKeysQuery, ProblemSchema, RevokeKeyBody, RotateKeyBody, RotateResult,
  UpdateAccountBody, UpdateKeyBody, VerdictSchema, VerifyBody, limitOf,
} from "../schemas.js";

const errors = { 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema };

/** The /v1 admin and verify routes; the caller has already checked the root key. */
export function registerAdminRoutes(parent: FastifyInstance, keygate: Keygate): void {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();

  // POST routes whose body is optional: an empty body means "no options".
  app.addHook("preValidation", (request, _reply, done) => {
    if (request.method === "POST" && request.body === undefined) request.body = {};
    done();
  });

  app.get("/apis", {
    schema: { tags: ["apis"], summary: "The APIs declared in the config", response: { 200: Type.Object({ data: Type.Array(ApiSchemaView) }), 401: ProblemSchema } },
  }, async () => ({
    data: [...keygate.apis.values()].map(({ config, codec }) => ({
      id: config.id, name: config.name,
      keyFormat: { ...config.keyFormat, examples: Object.fromEntries(config.keyFormat.environments.map((e) => [e, codec.head(e)])) },
      scopes: config.scopes.map((s) => (typeof s === "string" ? { name: s } : s)),
      defaultScopes: config.defaultScopes,
      rateLimit: config.rateLimit ?? null,
      environmentRateLimits: config.environmentRateLimits ?? {},
      lockout: config.lockout,
    })),
  }));

  app.post("/accounts", {
    schema: { tags: ["accounts"], summary: "Create an account (one of your customers)", body: CreateAccountBody, response: { 201: AccountSchema, ...errors } },
  }, async (request, reply) => reply.code(201).send(await keygate.accounts.create(request.body)));

  app.get("/accounts", {
    schema: { tags: ["accounts"], summary: "List accounts", querystring: ListAccountsQuery, response: { 200: AccountPage, ...errors } },
  }, async (request) => keygate.accounts.list({ cursor: request.query.cursor, limit: limitOf(request.query.limit) }));

  app.get("/accounts/:id", {
    schema: { tags: ["accounts"], summary: "Get an account", params: IdParams, response: { 200: AccountSchema, ...errors } },
  }, async (request) => keygate.accounts.get(request.params.id));

  app.patch("/accounts/:id", {
    schema: {
      tags: ["accounts"], summary: "Update an account",
      description: "`ipAllowlists` merges per environment: named environments are replaced, an empty list clears one. Enforced on every node at once.",
      params: IdParams, body: UpdateAccountBody, response: { 200: AccountSchema, ...errors },
    },
  }, async (request) => keygate.accounts.update(request.params.id, request.body));

  app.post("/keys", {
    schema: {
      tags: ["keys"], summary: "Create a key",
      description: "The response is the only place the secret `key` ever appears; keygate stores its hash.",
      body: CreateKeyBody, response: { 201: CreatedKeySchema, ...errors },
    },
  }, async (request, reply) => reply.code(201).header("cache-control", "no-store").send(await keygate.keys.create(request.body)));

  app.get("/keys", {
    schema: { tags: ["keys"], summary: "List keys, newest last, cursor-paginated", querystring: ListKeysQuery, response: { 200: KeyPage, ...errors } },
  }, async (request) => keygate.keys.list({ api: request.query.api, accountId: request.query.accountId, cursor: request.query.cursor, limit: limitOf(request.query.limit) }));

  app.get("/keys/:id", {
    schema: { tags: ["keys"], summary: "Get a key (never its secret)", params: IdParams, response: { 200: KeySchema, ...errors } },
  }, async (request) => keygate.keys.get(request.params.id));

  app.patch("/keys/:id", {
    schema: { tags: ["keys"], summary: "Update a key", params: IdParams, body: UpdateKeyBody, response: { 200: KeySchema, ...errors } },
  }, async (request) => keygate.keys.update(request.params.id, request.body));

  app.post("/keys/:id/revoke", {
    schema: { tags: ["keys"], summary: "Revoke a key; takes effect on the next request", description: "Revoking a revoked key changes nothing and answers the key as it is.", params: IdParams, body: RevokeKeyBody, response: { 200: KeySchema, ...errors } },
  }, async (request) => keygate.keys.revoke(request.params.id));

  app.post("/keys/:id/rotate", {
    schema: {
      tags: ["keys"], summary: "Rotate a key",
      description: "Issues a successor with the same settings. The old key keeps working for `gracePeriodSeconds`, then fails with ROTATED.",
      params: IdParams, body: RotateKeyBody, response: { 201: RotateResult, ...errors },
    },
  }, async (request, reply) => reply.code(201).header("cache-control", "no-store").send(await keygate.keys.rotate(request.params.id, request.body)));

  app.post("/keys/import", {
    schema: {
      tags: ["keys"], summary: "Import existing keys",
      description: "Takes existing secrets, or their SHA-256 hashes, unchanged — for migrating an installed base. All or nothing.",
      body: ImportKeysBody, response: { 201: ImportResult, ...errors },
    },
  }, async (request, reply) => {
    const keys = await keygate.keys.import(request.body.api, request.body.keys);
    return reply.code(201).send({ imported: keys.length, keys });
  });

  app.post("/keys/verify", {
    schema: {
      tags: ["verify"], summary: "Verify a key",
      description: "Always 200 for a well-formed request: a denied key is a verdict with `valid: false` and a stable `code`.",
      body: VerifyBody, response: { 200: VerdictSchema, ...errors },
    },
  }, async (request) => keygate.verifyKey(request.body, { source: "verify", requestId: request.id }));
}
