import swaggerUi from "@fastify/swagger-ui";
import type { FastifyInstance } from "fastify";

/** Where the interactive API reference is served. */
export const REFERENCE_PATH = "/docs";

/** The document the page renders: the same one served at /openapi.json. */
export const OPENAPI_PATH = "/openapi.json";

// Everything comes from keygate itself: the page works on a machine without internet, and a
// reference page has no business loading scripts, fonts or images from anywhere else.
const CSP = [
  "default-src 'self'", "base-uri 'self'", "connect-src 'self'", "font-src 'self' data:", "form-action 'self'",
  "frame-ancestors 'self'", "img-src 'self' data:", "object-src 'none'", "script-src 'self'", "script-src-attr 'none'",
  // Swagger UI sets some styles inline.
  "style-src 'self' 'unsafe-inline'",
].join("; ");

/**
 * The interactive API reference (Swagger UI) at `/docs`, rendering `/openapi.json`. Its scripts
 * and styles are bundled in the `@fastify/swagger-ui` package and served from here, so it needs
 * no CDN. Requests made with "Try it out" go to this server with the root key typed into
 * "Authorize", which the page keeps in memory only (never in localStorage).
 * Registered after `@fastify/swagger`, whose document it shows.
 *
 * @example
 * await app.register(swagger, { openapi: { … } });
 * await app.register(registerApiReference);
 * // GET /docs → the page; GET /docs/static/swagger-ui-bundle.js → its script
 */
export async function registerApiReference(app: FastifyInstance): Promise<void> {
  await app.register(swaggerUi, {
    routePrefix: REFERENCE_PATH,
    uiConfig: {
      // `urls` wins over the plugin's own `./json` copy: the page loads the very document
      // clients and the SDK use.
      urls: [{ url: OPENAPI_PATH, name: "keygate" }],
      deepLinking: true,
      persistAuthorization: false,
      displayRequestDuration: true,
      tryItOutEnabled: false,
      defaultModelsExpandDepth: 0,
    },
    validatorUrl: false,
    staticCSP: CSP,
    theme: { title: "keygate API reference" },
  });
}
