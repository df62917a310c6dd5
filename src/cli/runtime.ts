import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfigFile } from "../config/load.js";
import type { KeygateConfig } from "../config/schema.js";
import { createKeygate } from "../keygate.js";
import type { Keygate } from "../keygate.js";
import { createSqliteStore } from "../store/sqlite/index.js";

export interface RuntimeOptions {
  config?: string | undefined;
  data?: string | undefined;
}

/** The keygate.yaml shipped with the package, used when none is given and ./keygate.yaml is absent. */
export const bundledConfig = (): string => join(dirname(fileURLToPath(import.meta.url)), "..", "..", "keygate.yaml");

/** Which config file to read: --config, then KEYGATE_CONFIG, then ./keygate.yaml, then the bundled example. */
export function resolveConfigPath(given: string | undefined): { path: string; bundled: boolean } {
  const explicit = given ?? process.env.KEYGATE_CONFIG;
  if (explicit) return { path: resolve(explicit), bundled: false };
  const local = resolve("keygate.yaml");
  if (existsSync(local)) return { path: local, bundled: false };
  return { path: bundledConfig(), bundled: true };
}

export const resolveDataDir = (given: string | undefined): string => resolve(given ?? process.env.KEYGATE_DATA_DIR ?? "data");

/** Opens the configured keygate over the SQLite file in the data folder. */
export async function openKeygate(options: RuntimeOptions): Promise<{ keygate: Keygate; config: KeygateConfig; configPath: string; bundled: boolean; dataDir: string }> {
  const { path, bundled } = resolveConfigPath(options.config);
  const config = loadConfigFile(path);
  const dataDir = resolveDataDir(options.data);
  const keygate = await createKeygate({ config, store: createSqliteStore({ filename: join(dataDir, "keygate.db") }) });
  return { keygate, config, configPath: path, bundled, dataDir };
}
