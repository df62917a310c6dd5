import { Type } from "@sinclair/typebox";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../../keygate.js";
import { Cursor, IdParams, Limit, Nullable, ProblemSchema, limitOf } from "../schemas.js";

/**
 * The /v1 routes for applications (the payments seed: name, integration type, features that
 * grant scopes, a Client ID) and the JWT signing keys. The caller has checked the root key.
 */
const DateTime = Type.String({ format: "date-time" });
const Metadata = Type.Record(Type.String(), Type.Unknown(), { maxProperties: 64, description: "Free-form JSON object stored with the application." });
const Features = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100, description: "Names from the API's `features`; each grants its scopes to the application's keys." });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const IntegrationType = Type.String({ minLength: 1, maxLength: 64, description: "What the customer integrates with; `api` by default." });

const ApplicationSchema = Type.Object({
  id: Type.String({ examples: ["app_0VbjE0Y2pcCFTlhfo2AltY"] }), accountId: Type.String(), api: Type.String(), name: Type.String(),
  integrationType: Type.String(), features: Type.Array(Type.String()),
  scopes: Nullable(Type.Array(Type.String(), { description: "The scopes the features grant; null when the API declares no features." })),
  clientId: Type.String({ description: "Not a secret: sent with an API key to the token endpoints." }),
  metadata: Metadata, createdAt: DateTime, updatedAt: DateTime,
});
const ApplicationPage = Type.Object({ data: Type.Array(ApplicationSchema), nextCursor: Nullable(Type.String()) });
const CreateApplicationBody = Type.Object({
  accountId: Type.String({ minLength: 1, maxLength: 64 }), api: Type.String({ minLength: 1, maxLength: 64 }), name: Name,
  integrationType: Type.Optional(IntegrationType), features: Type.Optional(Features), metadata: Type.Optional(Metadata),
}, { additionalProperties: false });
const UpdateApplicationBody = Type.Object({
  name: Type.Optional(Name), integrationType: Type.Optional(IntegrationType), features: Type.Optional(Features), metadata: Type.Optional(Metadata),
}, { additionalProperties: false, minProperties: 1 });
const ListApplicationsQuery = Type.Object({
  accountId: Type.Optional(Type.String({ maxLength: 64 })), api: Type.Optional(Type.String({ maxLength: 64 })),
  cursor: Type.Optional(Cursor("app")), limit: Type.Optional(Limit),
}, { additionalProperties: false });

const Algorithm = Type.Union([Type.Literal("EdDSA"), Type.Literal("ES256")]);
const SigningKeySchema = Type.Object({
  kid: Type.String(), alg: Algorithm, status: Type.Union([Type.Literal("active"), Type.Literal("retired")]),
  createdAt: DateTime, retiredAt: Nullable(DateTime),
  publishedUntil: Nullable(Type.String({ format: "date-time", description: "When a retired key leaves the JWKS: after every token it signed has expired." })),
});

const errors = { 400: ProblemSchema, 401: ProblemSchema, 404: ProblemSchema, 409: ProblemSchema };

export function registerApplicationRoutes(parent: FastifyInstance, keygate: Keygate): void {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();

  app.post("/applications", {
    schema: { tags: ["applications"], summary: "Create an application for an account", body: CreateApplicationBody, response: { 201: ApplicationSchema, ...errors } },
  }, async (request, reply) => reply.code(201).send(await keygate.applications.create(request.body)));

  app.get("/applications", {
    schema: { tags: ["applications"], summary: "List applications, cursor-paginated", querystring: ListApplicationsQuery, response: { 200: ApplicationPage, ...errors } },
  }, async (request) => keygate.applications.list({ ...request.query, limit: limitOf(request.query.limit) }));

  app.get("/applications/:id", {
    schema: { tags: ["applications"], summary: "Get an application", params: IdParams, response: { 200: ApplicationSchema, ...errors } },
  }, async (request) => keygate.applications.get(request.params.id));

  app.patch("/applications/:id", {
    schema: {
      tags: ["applications"], summary: "Update an application",
      description: "Changing `features` changes the scopes of the application's keys at once, on every node: scopes of removed features are taken away, those of added features granted.",
      params: IdParams, body: UpdateApplicationBody, response: { 200: ApplicationSchema, ...errors },
    },
  }, async (request) => keygate.applications.update(request.params.id, request.body));

  app.get("/signing-keys", {
    schema: { tags: ["tokens"], summary: "The JWT signing keys (public data only)", response: { 200: Type.Object({ data: Type.Array(SigningKeySchema) }), ...errors } },
  }, async () => ({ data: await keygate.tokens.signingKeys.list() }));

  app.post("/signing-keys/rotate", {
    schema: {
      tags: ["tokens"], summary: "Rotate the JWT signing key",
      description: "A new key signs from now on; the old one stays in the JWKS until every token it signed has expired, so no token in flight breaks.",
      body: Type.Object({ algorithm: Type.Optional(Algorithm) }, { additionalProperties: false }),
      response: { 201: SigningKeySchema, ...errors },
    },
  }, async (request, reply) => reply.code(201).send(await keygate.tokens.signingKeys.rotate(request.body.algorithm)));
}
