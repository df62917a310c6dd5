import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../keygate.js";
import { KeygateError } from "../lib/errors.js";
import type { Clock } from "../lib/clock.js";
import { ProblemSchema } from "../http/schemas.js";
import type { PortalUsers } from "./users.js";
import { CreatePortalUserBody, ListPortalUsersQuery, PortalUserParams, PortalUserSchema, UpdatePortalUserBody } from "./schemas.js";

const errors = { 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema };

/**
 * /v1/portal/users, behind the root key: creates operators and users of accounts without
 * self-service sign-up, lists them, resets a password (ending the user's sessions) and
 * grants or withdraws the operator role. The caller has checked the root key.
 */
export function registerPortalAdminRoutes(parent: FastifyInstance, options: { keygate: Keygate; users: PortalUsers; clock: Clock }): void {
  const { keygate, users, clock } = options;
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  const find = async (id: string) => {
    const user = await keygate.store.getPortalUser(id);
    if (!user) throw new KeygateError("USER_NOT_FOUND", `No portal user with id ${JSON.stringify(id)}.`, 404);
    return user;
  };

  app.post("/v1/portal/users", {
    schema: {
      tags: ["portal"], summary: "Create a portal user",
      description: "An operator (`operator: true`, sees every account) or a user of one account (`accountId`). Works whether or not `portal.signUp` is on.",
      body: CreatePortalUserBody, response: { 201: PortalUserSchema, ...errors },
    },
  }, async (request, reply) => {
    const user = await users.create(request.body);
    return reply.code(201).send(users.view(user));
  });

  app.get("/v1/portal/users", {
    schema: {
      tags: ["portal"], summary: "List portal users, oldest first, cursor-paginated", querystring: ListPortalUsersQuery,
      response: { 200: Type.Object({ data: Type.Array(PortalUserSchema), nextCursor: Type.Union([Type.String(), Type.Null()]) }), ...errors },
    },
  }, async (request) => {
    const limit = request.query.limit === undefined ? 50 : Number(request.query.limit);
    const rows = await keygate.store.listPortalUsers({ accountId: request.query.accountId, after: request.query.cursor, limit: limit + 1 });
    const page = rows.slice(0, limit);
    return { data: page.map(users.view), nextCursor: rows.length > limit ? page[page.length - 1]!.id : null };
  });

  app.get("/v1/portal/users/:id", {
    schema: { tags: ["portal"], summary: "Get a portal user", params: PortalUserParams, response: { 200: PortalUserSchema, ...errors } },
  }, async (request) => users.view(await find(request.params.id)));

  app.patch("/v1/portal/users/:id", {
    schema: {
      tags: ["portal"], summary: "Update a portal user",
      description: "A new `password` ends every session of the user.",
      params: PortalUserParams, body: UpdatePortalUserBody, response: { 200: PortalUserSchema, ...errors },
    },
  }, async (request) => {
    let user = await find(request.params.id);
    if (request.body.password !== undefined) {
      user = await users.setPassword(user, request.body.password);
      await keygate.store.deletePortalSessions(user.id);
    }
    const patch: { name?: string; operator?: boolean } = {};
    if (request.body.name !== undefined) patch.name = request.body.name.trim();
    if (request.body.operator !== undefined) {
      if (!request.body.operator && user.accountId === null) {
        throw new KeygateError("ACCOUNT_REQUIRED", "operator: a user without an account must stay an operator.", 400, { field: "operator" });
      }
      patch.operator = request.body.operator;
    }
    if (Object.keys(patch).length > 0) user = (await keygate.store.updatePortalUser(user.id, patch, clock.now())) ?? user;
    return users.view(user);
  });
}
