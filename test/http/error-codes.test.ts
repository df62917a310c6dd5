/**
 * An API's `errorCodes` over real HTTP, for every error style: a rename of a verdict's code,
 * status or message wins over the style's default, each part on its own, and the codes it does
 * not name keep the style's defaults. Four gateway APIs on one port, one per style, each with
 * the same renames; the expected bodies are written out by hand, not derived from the renderer.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startGateway, startUpstream } from "./gateway-support.js";
import type { RunningGateway, Upstream } from "./gateway-support.js";

/** The same renames for every API: all three parts, the code only, the status only. */
const ERROR_CODES = {
  MISSING_CREDENTIALS: { code: "KG_NO_KEY", status: 422, message: "Present your key." },
  NOT_FOUND: { code: "KG_UNKNOWN_KEY" },
  REVOKED: { status: 410 },
};

type Case = "missing" | "notFound" | "revoked" | "malformed";

interface StyleCase {
  style: "problem" | "airtime-v1" | "airtime-v2" | "topup";
  /** The status and body each case must answer, the request id left out. */
  expect: Record<Case, { status: number; body: Record<string, unknown> }>;
  contentType: string;
}

const problem = (status: number, title: string, code: string, detail: string) =>
  ({ status, body: { type: "about:blank", title, status, detail, code } });
const v1 = (status: number, message: string) => ({ status, body: { message, statusCode: status } });
const v2 = (status: number, code: string, message: string) => ({ status, body: { success: false, error: { code, message } } });

const STYLES: StyleCase[] = [
  {
    style: "problem",
    contentType: "application/problem+json; charset=utf-8",
    expect: {
      missing: problem(422, "Unprocessable Entity", "KG_NO_KEY", "Present your key."),
      notFound: problem(401, "Unauthorized", "KG_UNKNOWN_KEY", "The API key does not exist."),
      revoked: problem(410, "Gone", "REVOKED", "The API key has been revoked."),
      malformed: problem(401, "Unauthorized", "MALFORMED_KEY", "The API key is not in this API's key format, or its checksum does not match."),
    },
  },
  {
    // The v1 body has no code: only the status and message renames can show.
    style: "airtime-v1",
    contentType: "application/json; charset=utf-8",
    expect: {
      missing: v1(422, "Present your key."),
      notFound: v1(401, "Invalid or missing authentication credentials"),
      revoked: v1(410, "Invalid or missing authentication credentials"),
      malformed: v1(401, "Invalid or missing authentication credentials"),
    },
  },
  {
    style: "airtime-v2",
    contentType: "application/json; charset=utf-8",
    expect: {
      missing: v2(422, "KG_NO_KEY", "Present your key."),
      notFound: v2(401, "KG_UNKNOWN_KEY", "API key not found."),
      revoked: v2(410, "REVOKED_API_KEY", "API key has been revoked."),
      malformed: v2(401, "INVALID_API_KEY", "API key is malformed."),
    },
  },
  {
    // The style's own default for a missing token is 400 MISSING_ACCESS_TOKEN: the rename wins.
    style: "topup",
    contentType: "application/json; charset=utf-8",
    expect: {
      missing: v2(422, "KG_NO_KEY", "Present your key."),
      notFound: v2(401, "KG_UNKNOWN_KEY", "The provided access token is invalid"),
      revoked: v2(410, "INVALID_ACCESS_TOKEN", "The provided access token is invalid"),
      malformed: v2(401, "INVALID_ACCESS_TOKEN", "The provided access token is invalid"),
    },
  },
];

/** The same styles without any renames: the defaults the renames above replace. */
const UNRENAMED: Record<StyleCase["style"], { status: number; code: string | null; message: string }> = {
  problem: { status: 401, code: "MISSING_CREDENTIALS", message: "No API key was presented." },
  "airtime-v1": { status: 401, code: null, message: "Invalid or missing authentication credentials" },
  "airtime-v2": { status: 401, code: "INVALID_API_KEY", message: "API key is missing." },
  topup: { status: 400, code: "MISSING_ACCESS_TOKEN", message: "Access token is required" },
};

const idOf = (style: string) => style.replace(/-/g, "");

describe("errorCodes rename a verdict's code, status and message over the error style's defaults", () => {
  let up: Upstream;
  let gw: RunningGateway;

  before(async () => {
    up = await startUpstream();
    const api = (style: string, renamed: boolean) => ({
      id: `${idOf(style)}${renamed ? "" : "-plain"}`,
      keyFormat: { prefix: `${idOf(style).slice(0, 6)}${renamed ? "" : "p"}` },
      lockout: { enabled: false },
      credentials: [{ type: "header", name: "X-Api-Key" }],
      errorStyle: style,
      ...(renamed ? { errorCodes: ERROR_CODES } : {}),
      upstream: up.url,
      pathPrefix: `/${idOf(style)}${renamed ? "" : "-plain"}`,
    });
    gw = await startGateway({ apis: STYLES.flatMap(({ style }) => [api(style, true), api(style, false)]) });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  for (const { style, expect, contentType } of STYLES) {
    describe(`${style} style`, () => {
      const call = (key?: string) => fetch(`${gw.gatewayUrl}/${idOf(style)}/orders`, { headers: key ? { "x-api-key": key } : {} });
      const check = async (res: Response, want: { status: number; body: Record<string, unknown> }) => {
        assert.equal(res.status, want.status);
        assert.equal(res.headers.get("content-type"), contentType);
        const body = (await res.json()) as Record<string, unknown>;
        if (style !== "airtime-v1") assert.match(String(body.requestId), /^req_/, "every error carries its request id");
        delete body.requestId;
        assert.deepEqual(body, want.body);
      };

      test("code, status and message renamed together", async () => {
        await check(await call(), expect.missing);
      });

      test("a code renamed alone keeps the style's status and message", async () => {
        const { key } = await gw.keygate.keys.create({ api: idOf(style), accountId: gw.accountId });
        // One character changed: well-formed (no checksum), but no such key.
        const unknown = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
        await check(await call(unknown), expect.notFound);
      });

      test("a status renamed alone keeps the style's code and message", async () => {
        const created = await gw.keygate.keys.create({ api: idOf(style), accountId: gw.accountId });
        assert.equal((await call(created.key)).status, 200);
        await gw.keygate.keys.revoke(created.id);
        await check(await call(created.key), expect.revoked);
      });

      test("a code errorCodes does not name keeps the style's defaults", async () => {
        await check(await call("not-a-key-of-this-api"), expect.malformed);
      });

      test("the renames belong to their API: the same style elsewhere keeps its defaults", async () => {
        const res = await fetch(`${gw.gatewayUrl}/${idOf(style)}-plain/orders`);
        const want = UNRENAMED[style];
        assert.equal(res.status, want.status);
        const body = (await res.json()) as { message?: string; detail?: string; code?: string; error?: { code: string; message: string } };
        const seen = style === "problem" ? { code: body.code, message: body.detail }
          : style === "airtime-v1" ? { code: null, message: body.message }
          : { code: body.error?.code, message: body.error?.message };
        assert.deepEqual(seen, { code: want.code, message: want.message });
      });
    });
  }
});

describe("errorCodes messages name the client's address and the key's environment through placeholders", () => {
  let up: Upstream;
  let gw: RunningGateway;

  before(async () => {
    up = await startUpstream();
    gw = await startGateway({
      apis: [{
        // The top-up style, for an API that is not the seed's: its own settings URL.
        id: "mine", keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" },
        lockout: { enabled: false }, credentials: [{ type: "header", name: "X-Access-Token" }], errorStyle: "topup",
        errorCodes: { IP_NOT_ALLOWED: { message: "{ip} may not use this {ENVIRONMENT} ({environment}) key; see https://example.test/ips. {nope} stays." } },
        upstream: up.url, pathPrefix: "/mine",
      }, {
        id: "seed", keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" },
        lockout: { enabled: false }, credentials: [{ type: "header", name: "X-Access-Token" }], errorStyle: "topup",
        upstream: up.url, pathPrefix: "/seed",
      }],
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const denied = async (api: string) => {
    const { key } = await gw.key({ api, environment: "production", ipAllowlist: ["198.51.100.0/24"] });
    const res = await fetch(`${gw.gatewayUrl}/${api}/orders`, { headers: { "x-access-token": key } });
    assert.equal(res.status, 403);
    return ((await res.json()) as { error: { code: string; message: string } }).error;
  };

  test("an API's own message is filled in; unknown placeholders are left as written", async () => {
    assert.deepEqual(await denied("mine"), { code: "IP_NOT_ALLOWED", message: "127.0.0.1 may not use this PRODUCTION (production) key; see https://example.test/ips. {nope} stays." });
  });

  test("without a rename the top-up style keeps the seed's wording", async () => {
    assert.deepEqual(await denied("seed"), {
      code: "IP_NOT_ALLOWED",
      message: "Your IP address 127.0.0.1 is not whitelisted for this PRODUCTION API key. Add your IP to the whitelist at https://oneclickdz.com/#/settings",
    });
  });
});
