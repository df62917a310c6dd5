/**
 * Secret scanning: find keys in public text, and act on GitHub's reports of leaked keys.
 *
 * @example
 * import { createSecretScanner, secretPattern } from "./scanning/index.js";
 * const scanner = createSecretScanner(keygate.config.apis);
 * scanner.scan('API_KEY="sk_live_…"'); // [{ api: "demo", key: "sk_live_…", index: 9, environment: "live" }]
 */
export { secretPattern, keyHeads } from "./pattern.js";
export type { SecretPattern, GithubPatternFields } from "./pattern.js";
export { createSecretScanner } from "./scanner.js";
export type { SecretScanner, SecretMatch } from "./scanner.js";
export { findKeyBySecret, reportLeakedKey } from "./leaks.js";
export type { LeakAction, LeakReport, LeakRecord, LeakOutcome } from "./leaks.js";
export { createGithubPublicKeys, parseKeyDocument, GITHUB_PUBLIC_KEYS_URL } from "./github/public-keys.js";
export type { GithubPublicKeys, GithubPublicKeysOptions } from "./github/public-keys.js";
export { verifyGithubSignature } from "./github/signature.js";
export type { SignatureVerdict, SignatureFailure } from "./github/signature.js";
export { parseGithubAlerts } from "./github/alerts.js";
export type { GithubAlert, GithubAlertLabel, ParsedAlerts } from "./github/alerts.js";
