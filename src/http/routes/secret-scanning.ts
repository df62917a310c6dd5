import { Type } from "@sinclair/typebox";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance } from "fastify";
import type { Keygate } from "../../keygate.js";
import { KeygateError, notFound } from "../../lib/errors.js";
import type { Clock } from "../../lib/clock.js";
import { secretPattern } from "../../scanning/pattern.js";
import { reportLeakedKey } from "../../scanning/leaks.js";
import { createGithubPublicKeys } from "../../scanning/github/public-keys.js";
import type { GithubPublicKeys } from "../../scanning/github/public-keys.js";
import { verifyGithubSignature } from "../../scanning/github/signature.js";
import { parseGithubAlerts } from "../../scanning/github/alerts.js";
import type { GithubAlertLabel } from "../../scanning/github/alerts.js";
import { IdParams, ProblemSchema } from "../schemas.js";

/** Where GitHub delivers secret-scanning partner alerts, when `secretScanning.github.enabled`. */
export const GITHUB_ALERTS_PATH = "/secret-scanning/github";

const SecretPatternSchema = Type.Object({
  api: Type.String(),
  regex: Type.String({ description: "JavaScript/PCRE2 regular expression; the whole match is a key." }),
  portableRegex: Type.String({ description: "The same without lookarounds (RE2: gitleaks, trufflehog); group 1 is the key." }),
  github: Type.Object({
    secretType: Type.String({ description: "A suggested secret type name to register with GitHub." }),
    secretFormat: Type.String(), before: Type.String(), after: Type.String(),
  }, { description: "The fields of GitHub's secret-scanning pattern format (Hyperscan)." }),
  checksum: Type.Boolean(),
  checksumAlgorithm: Type.Union([Type.String(), Type.Null()], { description: "crc32-base62-6 or crc32-hex-8: CRC-32 of everything before the checksum." }),
  highPrecision: Type.Boolean({ description: "True when keys have a literal head and a checksum, as GitHub's partner program asks." }),
  caveat: Type.Union([Type.String(), Type.Null()]),
});

/**
 * `GET /v1/apis/:id/secret-pattern`: the regular expressions that find the API's keys in public
 * code, for GitHub's partner program, gitleaks, trufflehog or a pre-commit hook. The caller
 * has checked the root key.
 */
export function registerSecretPatternRoutes(parent: FastifyInstance, keygate: Keygate): void {
  const app = parent.withTypeProvider<TypeBoxTypeProvider>();
  app.get("/apis/:id/secret-pattern", {
    schema: {
      tags: ["apis"], summary: "How the API's keys are found in public code",
      description: "A match counts only when its checksum is right (see docs/secret-scanning.md); GitHub reports matches to POST /secret-scanning/github.",
      params: IdParams, response: { 200: SecretPatternSchema, 401: ProblemSchema, 404: ProblemSchema },
    },
  }, async (request) => {
    const api = keygate.apis.get(request.params.id);
    if (!api) throw notFound("api", request.params.id);
    return secretPattern(api.config.id, api.config.keyFormat);
  });
}

export interface GithubSecretScanningOptions {
  /** GitHub's keys; by default fetched from `secretScanning.github.publicKeysUrl`. */
  publicKeys?: GithubPublicKeys | undefined;
  /** Stamps `metadata.leaked.at`; the wall clock by default. */
  clock?: Clock | undefined;
}

const AlertSchema = Type.Array(Type.Object({
  token: Type.String({ description: "The string GitHub found." }),
  type: Type.String({ description: "The secret type name registered with GitHub." }),
  url: Type.Optional(Type.String({ description: "Where it was found." })),
  source: Type.Optional(Type.String({ examples: ["content", "commit", "issue_comment", "npm"] })),
}));
const LabelSchema = Type.Array(Type.Object({
  token_raw: Type.String(), token_type: Type.String(),
  label: Type.Union([Type.Literal("true_positive"), Type.Literal("false_positive")]),
}));

const SIGNATURE_MESSAGES = {
  MISSING_SIGNATURE: "Send Github-Public-Key-Identifier and Github-Public-Key-Signature; only GitHub's signed alerts are accepted.",
  UNKNOWN_PUBLIC_KEY: "Github-Public-Key-Identifier names no key GitHub publishes for secret scanning.",
  INVALID_SIGNATURE: "Github-Public-Key-Signature is not a valid signature of this body by the named key.",
} as const;

/**
 * `POST /secret-scanning/github`: GitHub's secret-scanning partner alerts. The body is verified
 * byte for byte against GitHub's published keys, then each reported token is looked up; one of
 * this deployment's keys is revoked or flagged (`secretScanning.action`), and GitHub is told
 * which reports were real. Tokens are never logged. Registered only when enabled.
 */
export function registerGithubSecretScanning(app: FastifyInstance, keygate: Keygate, options: GithubSecretScanningOptions = {}): void {
  const config = keygate.config.secretScanning;
  if (!config.github.enabled) return;
  const keys = options.publicKeys ?? createGithubPublicKeys({
    url: config.github.publicKeysUrl,
    token: config.github.publicKeysToken || undefined,
    cacheMs: config.github.cacheSeconds * 1000,
    refetchIntervalMs: config.github.refetchIntervalSeconds * 1000,
    timeoutMs: config.github.timeoutMs,
  });
  const now = options.clock ? () => options.clock!.now() : Date.now;

  // The signature covers the exact bytes GitHub sent, so this route reads the body raw,
  // whatever its content type says; the JSON is parsed only once it is known to be GitHub's.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_request, body, done) => { done(null, body); });

  app.post(GITHUB_ALERTS_PATH, {
    schema: {
      tags: ["secret scanning"], summary: "Receive GitHub's secret-scanning partner alerts",
      description: "Signed by GitHub (ECDSA P-256, SHA-256) with the key named in Github-Public-Key-Identifier; no root key. "
        + `Each reported key of this deployment is ${config.action === "revoke" ? "revoked and " : ""}recorded in metadata.leaked. See docs/secret-scanning.md.`,
      security: [],
      headers: Type.Object({ "github-public-key-identifier": Type.Optional(Type.String()), "github-public-key-signature": Type.Optional(Type.String()) }),
      body: AlertSchema,
      response: { 200: LabelSchema, 400: ProblemSchema, 401: ProblemSchema, 503: ProblemSchema },
    },
    // The schema documents the body; the raw bytes are checked by hand after the signature.
    validatorCompiler: () => () => true,
  }, async (request, reply) => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
    const verdict = await verifyGithubSignature(keys, raw, {
      keyIdentifier: request.headers["github-public-key-identifier"],
      signature: request.headers["github-public-key-signature"],
    });
    if (!verdict.valid) throw new KeygateError(verdict.code, SIGNATURE_MESSAGES[verdict.code], 401);
    const parsed = parseGithubAlerts(raw);
    if (!parsed.ok) throw new KeygateError(parsed.code, parsed.message, 400);

    const labels: GithubAlertLabel[] = [];
    let real = 0;
    for (const alert of parsed.alerts) {
      const outcome = await reportLeakedKey(keygate, { token: alert.token, url: alert.url, source: alert.source, reporter: "github" }, config.action, now);
      labels.push({ token_raw: alert.token, token_type: alert.type, label: outcome.found ? "true_positive" : "false_positive" });
      if (outcome.found) {
        real++;
        request.log.warn({ keyId: outcome.keyId, api: outcome.api, action: outcome.action, url: alert.url, source: alert.source }, "secret scanning: a key was found in public");
      }
    }
    request.log.info({ alerts: labels.length, truePositives: real, publicKey: verdict.keyIdentifier }, "secret scanning: GitHub alert processed");
    return reply.header("cache-control", "no-store").send(labels);
  });
}
