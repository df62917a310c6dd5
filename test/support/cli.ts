import { spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The built CLI, as `npx keygate` runs it. */
export const CLI = fileURLToPath(new URL("../../dist/cli/index.js", import.meta.url));

export interface CliRun { code: number | null; stdout: string; stderr: string }

/**
 * Runs `keygate <args>` in `dir` with `<dir>/keygate.yaml` and the data folder `<dir>/<data>`,
 * with none of the developer's KEYGATE_* database, Redis, root-key or pepper settings leaking
 * in; `env` adds or overrides variables.
 */
export function runCli(dir: string, args: string[], options: { data?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYGATE_DATA_DIR: join(dir, options.data ?? "data"), KEYGATE_CONFIG: join(dir, "keygate.yaml") };
  for (const k of ["KEYGATE_DATABASE_URL", "KEYGATE_REDIS_URL", "KEYGATE_ROOT_KEY", "KEYGATE_HASH_SECRET"]) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env: { ...env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
