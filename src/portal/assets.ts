import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { KeygateError } from "../lib/errors.js";

/**
 * The portal's page: one HTML document and a few plain ES modules, stylesheets and icons from
 * ./static (copied to dist/portal/static by `npm run build`), held in memory and sent with an
 * ETag. Every path under /portal that is not an asset or the API answers the document, so the
 * page's own routes (/portal/keys, /portal/usage, …) survive a reload.
 */
const STATIC_DIR = new URL("./static/", import.meta.url);

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
};

/**
 * Scripts, styles, images and fetches from this origin only; no inline script or style, no
 * framing, no plugins. The page builds every element with DOM calls, so it needs nothing more.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
  "font-src 'self'", "manifest-src 'self'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'",
].join("; ");

interface Asset { body: Buffer; type: string; etag: string }

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function load(title: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(STATIC_DIR)) {
    const ext = name.slice(name.lastIndexOf("."));
    const type = TYPES[ext];
    if (!type) continue;
    let body = readFileSync(new URL(name, STATIC_DIR));
    if (name === "index.html") body = Buffer.from(body.toString("utf8").replaceAll("{{title}}", escapeHtml(title)));
    assets.set(name, { body, type, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"` });
  }
  if (!assets.has("index.html")) throw new Error(`keygate: the portal's page is missing from ${STATIC_DIR.pathname} (run npm run build)`);
  return assets;
}

function send(request: FastifyRequest, reply: FastifyReply, asset: Asset): FastifyReply {
  reply.header("etag", asset.etag).header("cache-control", "no-cache").type(asset.type);
  if (request.headers["if-none-match"] === asset.etag) return reply.code(304).send();
  return reply.send(asset.body);
}

/** Registers GET /portal, /portal/assets/:file and the page's own paths. */
export function registerPortalAssets(app: FastifyInstance, title: string): void {
  const assets = load(title);
  const page = assets.get("index.html")!;

  app.get("/portal", { schema: { hide: true } }, async (request, reply) => send(request, reply, page));
  app.get("/portal/assets/:file", { schema: { hide: true } }, async (request, reply) => {
    const file = (request.params as { file: string }).file;
    const asset = file === "index.html" ? undefined : assets.get(file);
    if (!asset) throw new KeygateError("ROUTE_NOT_FOUND", `No portal asset ${JSON.stringify(file)}.`, 404);
    return send(request, reply, asset);
  });
  app.get("/portal/*", { schema: { hide: true } }, async (request, reply) => {
    if (request.url.startsWith("/portal/api/")) {
      throw new KeygateError("ROUTE_NOT_FOUND", `No route ${request.method} ${request.url.split("?")[0]}; the portal's API is described in docs/portal.md.`, 404);
    }
    return send(request, reply, page);
  });
}
