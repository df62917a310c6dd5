import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { createKeygate, createMemoryStore } from "../../src/index.js";
import type { Keygate } from "../../src/index.js";
import { buildServer } from "../../src/http/server.js";
import { sha256Hex } from "../../src/keys/hash.js";
import { freePort, hasCommand, startProcess, waitFor } from "../support/processes.js";

const NGINX = "/usr/sbin/nginx";
const skip = hasCommand(NGINX) ? false : "nginx is not installed (apt-get install nginx; .ci/run does)";

/** The recipe of docs/forward-auth.md, with ports filled in. */
function nginxConf(dir: string, port: number, keygatePort: number, upstreamPort: number): string {
  const doc = readFileSync(new URL("../../docs/forward-auth.md", import.meta.url), "utf8");
  const recipe = /```nginx\n([\s\S]*?)```/.exec(doc)![1]!
    .replace("server 127.0.0.1:8080;", `server 127.0.0.1:${keygatePort};`)
    .replace("listen 80;", `listen 127.0.0.1:${port};`)
    .replace("proxy_pass http://127.0.0.1:3000;", `proxy_pass http://127.0.0.1:${upstreamPort};`);
  return `user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${recipe}
}
`;
}

describe("forward-auth behind a real nginx", { skip }, () => {
  let dir: string;
  let keygate: Keygate;
  let app: FastifyInstance;
  let upstream: Server;
  let nginx: ReturnType<typeof startProcess>;
  let base: string;
  let accountId: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "keygate-nginx-"));
    keygate = await createKeygate({
      store: createMemoryStore(),
      config: {
        server: { trustedProxies: ["127.0.0.1/32"] },
        apis: [{
          id: "oneclickdz",
          keyFormat: { environments: ["sandbox", "production"], environmentInKey: false, alphabet: "uuid" },
          scopes: ["read", "write"], defaultScopes: ["read", "write"],
          credentials: [{ type: "header", name: "X-Access-Token" }],
          errorStyle: "topup",
          rateLimit: { limit: 3, windowSeconds: 3600 },
          routes: [{ methods: ["GET"], path: "/v3/*", scopes: ["read"] }, { methods: ["POST"], path: "/v3/*", scopes: ["write"] }],
        }],
      },
    });
    app = await buildServer({ keygate, rootKeyHash: sha256Hex("r".repeat(40)) });
    await app.listen({ port: 0, host: "127.0.0.1" });
    upstream = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ path: req.url, method: req.method, headers: req.headers }));
    });
    await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
    const port = await freePort();
    const conf = join(dir, "nginx.conf");
    writeFileSync(conf, nginxConf(dir, port, (app.server.address() as { port: number }).port, (upstream.address() as { port: number }).port));
    nginx = startProcess(NGINX, ["-p", dir, "-c", conf]);
    base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${base}/v3/balance`)).status > 0, 10_000);
    accountId = (await keygate.accounts.create({ name: "+213665983439", email: "dz@example.test" })).id;
  });

  after(async () => {
    await nginx?.stop();
    await app?.close();
    await keygate?.close();
    await new Promise((r) => upstream?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test("a valid key reaches the upstream with identity headers and without the key", async () => {
    const { key, id } = await keygate.keys.create({ api: "oneclickdz", accountId, environment: "production" });
    const res = await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": key, "X-Keygate-Key-Id": "key_spoofed" } });
    assert.equal(res.status, 200);
    const seen = (await res.json()) as { headers: Record<string, string> };
    assert.equal(seen.headers["x-keygate-key-id"], id);
    assert.equal(seen.headers["x-keygate-account-id"], accountId);
    assert.equal(seen.headers["x-keygate-environment"], "production");
    assert.equal(seen.headers["x-keygate-scopes"], "read write");
    assert.equal(seen.headers["x-access-token"], undefined);
    assert.equal(res.headers.get("x-ratelimit-limit"), "3");
    assert.equal(res.headers.get("x-ratelimit-remaining"), "2");
  });

  test("a missing key is a 400 MISSING_ACCESS_TOKEN in the top-up style", async () => {
    const res = await fetch(`${base}/v3/balance`);
    assert.equal(res.status, 400);
    const body = (await res.json()) as { success: boolean; error: { code: string; message: string }; requestId: string };
    assert.equal(body.success, false);
    assert.equal(body.error.code, "MISSING_ACCESS_TOKEN");
    assert.equal(body.error.message, "Access token is required");
    assert.match(body.requestId, /^req_/);
  });

  test("a READ-ONLY key is refused on POST with 403 and allowed on GET", async () => {
    const { key } = await keygate.keys.create({ api: "oneclickdz", accountId, scopes: ["read"] });
    assert.equal((await fetch(`${base}/v3/topup`, { method: "POST", headers: { "X-Access-Token": key } })).status, 403);
    assert.equal((await fetch(`${base}/v3/orders`, { headers: { "X-Access-Token": key } })).status, 200);
  });

  test("the rate limit reaches the client as a real 429 with Retry-After and X-RateLimit headers", async () => {
    const { key } = await keygate.keys.create({ api: "oneclickdz", accountId });
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": key } })).status, 200);
    const res = await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": key } });
    assert.equal(res.status, 429);
    assert.equal(res.headers.get("x-ratelimit-remaining"), "0");
    assert.equal(res.headers.get("x-ratelimit-limit"), "3");
    assert.ok(Number(res.headers.get("retry-after")) >= 1);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(body.error.code, "RATE_LIMITED");
  });

  test("an IP outside the key's whitelist gets 403 IP_NOT_ALLOWED naming the IP and environment", async () => {
    const { key } = await keygate.keys.create({ api: "oneclickdz", accountId, environment: "production", ipAllowlist: ["203.0.113.45"] });
    const res = await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": key } });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "IP_NOT_ALLOWED");
    assert.equal(body.error.message, "Your IP address 127.0.0.1 is not whitelisted for this PRODUCTION API key. Add your IP to the whitelist at https://oneclickdz.com/#/settings");
  });

  test("five wrong keys count attemptsLeft down, then the IP is blocked", async () => {
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": "ea27b376-9f5c-4b09-883f-1b96cd7b541c" } });
      assert.equal(res.status, 401);
      const body = (await res.json()) as { error: { code: string; details: { attemptsLeft: number } } };
      assert.equal(body.error.code, "INVALID_ACCESS_TOKEN");
      seen.push(body.error.details.attemptsLeft);
    }
    assert.deepEqual(seen, [4, 3, 2, 1, 0]);
    const { key } = await keygate.keys.create({ api: "oneclickdz", accountId });
    const blocked = await fetch(`${base}/v3/balance`, { headers: { "X-Access-Token": key } });
    assert.equal(blocked.status, 403);
    assert.equal(((await blocked.json()) as { error: { code: string } }).error.code, "IP_BLOCKED");
    assert.ok(Number(blocked.headers.get("retry-after")) > 800);
  });
});
