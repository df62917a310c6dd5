import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import type { ImportKeyInput } from "../keygate.js";

/** One row of an import file: `accountEmail` may stand in for `accountId`. */
export type ImportRow = Omit<ImportKeyInput, "accountId"> & { accountId?: string; accountEmail?: string };

const LIST_FIELDS = new Set(["scopes", "ipAllowlist"]);

/**
 * Reads keys to import from JSON (an array), JSON Lines, or CSV with a header row.
 * In CSV, `scopes` and `ipAllowlist` are space- or `;`-separated, `rateLimit` is `limit/seconds`.
 */
export function readImportFile(file: string): ImportRow[] {
  const text = readFileSync(file, "utf8");
  const ext = extname(file).toLowerCase();
  if (ext === ".csv") {
    const records = parseCsv(text, { columns: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
    return records.map((r, i) => {
      const row: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(r)) {
        if (v === "") continue;
        if (LIST_FIELDS.has(k)) row[k] = v.split(/[\s;]+/).filter(Boolean);
        else if (k === "rateLimit") {
          const m = /^(\d+)\/(\d+)$/.exec(v);
          if (!m) throw new Error(`${file}: row ${i + 2}: rateLimit must be limit/seconds, e.g. 1000/3600`);
          row.rateLimit = { limit: Number(m[1]), windowSeconds: Number(m[2]) };
        } else if (k === "metadata") {
          try { row.metadata = JSON.parse(v); } catch { throw new Error(`${file}: row ${i + 2}: metadata is not JSON`); }
        } else row[k] = v;
      }
      return row as ImportRow;
    });
  }
  const parseLine = (line: string, n: number): ImportRow => {
    try {
      const v = JSON.parse(line) as unknown;
      if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("not an object");
      return v as ImportRow;
    } catch (e) {
      throw new Error(`${file}: line ${n}: not a JSON object (${(e as Error).message})`);
    }
  };
  const trimmed = text.trimStart();
  if (ext === ".json" || trimmed.startsWith("[")) {
    let v: unknown;
    try { v = JSON.parse(text); } catch (e) { throw new Error(`${file}: not valid JSON: ${(e as Error).message}`); }
    if (!Array.isArray(v)) throw new Error(`${file}: expected a JSON array of keys`);
    return v as ImportRow[];
  }
  return text.split("\n").map((l, i) => [l.trim(), i + 1] as const).filter(([l]) => l !== "").map(([l, n]) => parseLine(l, n));
}
