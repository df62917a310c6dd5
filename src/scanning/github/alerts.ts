/** One match GitHub reports: the token, the secret type it was registered as, and where it was found. */
export interface GithubAlert {
  token: string;
  /** The secret type name the provider registered with GitHub, e.g. `demo_api_key`. */
  type: string;
  /** The public address of the match (a blob, a comment, an npm package), when GitHub gives one. */
  url: string | null;
  /** Where it was found: `content`, `commit`, `issue_comment`, `npm`, …; GitHub adds new ones. */
  source: string | null;
}

/** How GitHub learns which reports were real: its partner feedback format. */
export interface GithubAlertLabel {
  token_raw: string;
  token_type: string;
  label: "true_positive" | "false_positive";
}

export type ParsedAlerts =
  | { ok: true; alerts: GithubAlert[] }
  | { ok: false; code: "MALFORMED_JSON" | "INVALID_ALERT"; message: string };

// Far longer than any key keygate issues (512 characters at most); longer strings are not ours.
const MAX_TOKEN_LENGTH = 4096;
const MAX_FIELD_LENGTH = 8192;

/**
 * Reads the body of a secret-scanning partner alert: a JSON array of `{token, type, url,
 * source}`. Unknown fields are ignored, as GitHub may add some. Messages name the position and
 * the field, never a token's value.
 *
 * @example
 * const parsed = parseGithubAlerts(rawBody);
 * if (!parsed.ok) return reply.code(400).send({ code: parsed.code, detail: parsed.message });
 */
export function parseGithubAlerts(raw: Uint8Array): ParsedAlerts {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString("utf8"));
  } catch {
    // JSON.parse quotes part of the input in its message: that could be a token, so it is not repeated.
    return { ok: false, code: "MALFORMED_JSON", message: "The body is not valid JSON; GitHub sends a JSON array of {token, type, url, source}." };
  }
  if (!Array.isArray(doc)) return { ok: false, code: "INVALID_ALERT", message: "Expected a JSON array of {token, type, url, source}." };
  const alerts: GithubAlert[] = [];
  for (const [i, item] of (doc as unknown[]).entries()) {
    if (typeof item !== "object" || item === null || Array.isArray(item)) {
      return { ok: false, code: "INVALID_ALERT", message: `[${i}]: expected an object {token, type, url, source}.` };
    }
    const { token, type, url, source } = item as Record<string, unknown>;
    if (typeof token !== "string" || token === "" || token.length > MAX_TOKEN_LENGTH) {
      return { ok: false, code: "INVALID_ALERT", message: `[${i}].token: expected a string of 1 to ${MAX_TOKEN_LENGTH} characters.` };
    }
    if (typeof type !== "string" || type.length > MAX_FIELD_LENGTH) {
      return { ok: false, code: "INVALID_ALERT", message: `[${i}].type: expected a string.` };
    }
    for (const [name, value] of [["url", url], ["source", source]] as const) {
      if (value !== undefined && value !== null && (typeof value !== "string" || value.length > MAX_FIELD_LENGTH)) {
        return { ok: false, code: "INVALID_ALERT", message: `[${i}].${name}: expected a string.` };
      }
    }
    alerts.push({ token, type, url: typeof url === "string" ? url : null, source: typeof source === "string" ? source : null });
  }
  return { ok: true, alerts };
}
