/**
 * Gateway mode and its upstream, over real HTTP: bodies stream both ways, connections are
 * kept alive, and upstream failures become 502/504 in the API's own error style while the
 * upstream's own errors pass untouched. Hop-by-hop fields stop at keygate.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { BIG_CHUNK, BIG_CHUNKS, bigChunk, deadUrl, rawRequest, startGateway, startUpstream } from "./gateway-support.js";
import type { Echo, RunningGateway, Upstream } from "./gateway-support.js";

/** Rejects after `ms`: the tests wait for nothing longer than they must. */
const within = <T>(ms: number, what: string, promise: Promise<T>): Promise<T> =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);

describe("gateway and its upstream", () => {
  let up: Upstream;
  let dead: string;
  let gw: RunningGateway;

  before(async () => {
    up = await startUpstream("main");
    dead = await deadUrl();
    const api = { keyFormat: { prefix: "sk" }, lockout: { enabled: false }, rateLimit: { limit: 1000, windowSeconds: 3600 } };
    gw = await startGateway({
      // Its own port, so that one API may take every path under "/".
      server: { gatewayPort: 0 },
      apis: [
        { id: "shop", ...api, upstream: up.url, upstreamTimeoutMs: 300, rateLimitHeaders: { ietf: true } },
        { id: "down", ...api, upstream: dead, pathPrefix: "/down" },
        { id: "topup", ...api, upstream: dead, pathPrefix: "/topup", errorStyle: "topup", credentials: [{ type: "header", name: "X-Access-Token" }] },
        { id: "airtime", ...api, upstream: up.url, pathPrefix: "/hang", upstreamTimeoutMs: 200, errorStyle: "airtime-v2" },
      ],
    });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const keyOf = async (api: string, input: Record<string, unknown> = {}) =>
    (await gw.keygate.keys.create({ api, accountId: gw.accountId, ...input })).key;
  const call = (path: string, key: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${gw.gatewayUrl}${path}`, { signal: AbortSignal.timeout(5000), ...init, headers: { authorization: `Bearer ${key}`, ...(init.headers as Record<string, string> | undefined) } });

  describe("streaming", () => {
    test("a large response reaches the client while the upstream is still sending it", async () => {
      const key = await keyOf("shop");
      const res = await call("/big", key);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-length"), String(BIG_CHUNK * BIG_CHUNKS));
      const reader = res.body!.getReader();
      const first = await within(2000, "first bytes", reader.read());
      assert.ok(first.value && first.value.length > 0);
      assert.equal(up.bigFinished(), false, "the first bytes came before the upstream's last");

      const hash = createHash("sha256").update(first.value);
      let bytes = first.value.length;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        hash.update(value);
        bytes += value.length;
      }
      const expected = createHash("sha256");
      for (let i = 0; i < BIG_CHUNKS; i++) expected.update(bigChunk(i));
      assert.equal(bytes, BIG_CHUNK * BIG_CHUNKS);
      assert.equal(hash.digest("hex"), expected.digest("hex"), "every byte, in order");
      assert.equal(up.bigFinished(), true);
    });

    test("an upload reaches the upstream before the client has finished sending it", async () => {
      const key = await keyOf("shop");
      const chunks = Array.from({ length: 16 }, (_, i) => Buffer.alloc(64 * 1024, i + 1));
      const arrived = up.firstUploadChunk();
      let next = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          // The rest of the body waits until the upstream has the start of it: a proxy that
          // buffered the whole body first would never get there.
          if (next === 1) await within(2000, "the upstream's first chunk", arrived);
          if (next === chunks.length) { controller.close(); return; }
          controller.enqueue(chunks[next++]!);
        },
      });
      const res = await call("/upload", key, { method: "POST", body, headers: { "content-type": "application/octet-stream" }, duplex: "half" } as RequestInit);
      assert.equal(res.status, 200);
      const got = (await res.json()) as { bytes: number; sha256: string; contentLength: string | null };
      assert.equal(got.bytes, 16 * 64 * 1024);
      assert.equal(got.sha256, createHash("sha256").update(Buffer.concat(chunks)).digest("hex"));
    });

    test("an upload with a Content-Length arrives whole, with that length", async () => {
      const key = await keyOf("shop");
      const body = Buffer.alloc(3 * 1024 * 1024 + 7, 0x5a);
      const res = await call("/upload", key, { method: "PUT", body });
      const got = (await res.json()) as { bytes: number; sha256: string; contentLength: string | null };
      assert.deepEqual(got, { bytes: body.length, sha256: createHash("sha256").update(body).digest("hex"), contentLength: String(body.length) });
    });
  });

  test("clients that go away mid-download or mid-upload leave keygate serving", async () => {
    const key = await keyOf("shop");
    const aborted = new AbortController();
    const big = await call("/big", key, { signal: aborted.signal });
    await big.body!.getReader().read();
    aborted.abort();

    // Half a declared body, then the connection drops.
    const socket = connect(Number(new URL(gw.gatewayUrl).port), "127.0.0.1");
    try {
      await new Promise<void>((resolve) => socket.once("connect", resolve));
      const arrived = up.firstUploadChunk();
      socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Length: 100000\r\n\r\n${"x".repeat(5000)}`);
      await within(2000, "the upstream's first chunk", arrived);
    } finally {
      socket.destroy();
    }

    const res = await call("/still/here", key);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as Echo).path, "/still/here");
  });

  test("keep-alive: many sequential requests share a few upstream connections", async () => {
    const fresh = await startUpstream("fresh");
    const local = await startGateway({ server: { gatewayPort: 0 }, apis: [{ id: "shop", keyFormat: { prefix: "sk" }, upstream: fresh.url }] });
    try {
      const key = (await local.key()).key;
      for (let i = 0; i < 40; i++) {
        const res = await fetch(`${local.gatewayUrl}/n/${i}`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5000) });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      assert.equal(fresh.requestCount(), 40);
      assert.ok(fresh.connections() <= 2, `40 requests over ${fresh.connections()} connections`);
    } finally {
      await local.close();
      await fresh.close();
    }
  });

  describe("upstream failures", () => {
    test("an upstream that cannot be reached is 502 UPSTREAM_UNAVAILABLE, with the rate-limit headers", async () => {
      const key = await keyOf("down");
      const started = Date.now();
      const res = await call("/down/orders", key, { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
      assert.equal(res.status, 502);
      assert.ok(Date.now() - started < 2000, "no retries");
      assert.equal(res.headers.get("content-type"), "application/problem+json; charset=utf-8");
      assert.equal(res.headers.get("x-ratelimit-limit"), "1000");
      assert.equal(res.headers.get("x-ratelimit-remaining"), "999");
      const body = (await res.json()) as { status: number; code: string; requestId: string };
      assert.deepEqual([body.status, body.code, body.requestId], [502, "UPSTREAM_UNAVAILABLE", res.headers.get("x-request-id")]);
    });

    test("502 in the top-up style", async () => {
      const key = await keyOf("topup");
      const res = await fetch(`${gw.gatewayUrl}/topup/v3/balance`, { headers: { "x-access-token": key, "x-request-id": "topup-502" }, signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 502);
      assert.equal(res.headers.get("content-type"), "application/json; charset=utf-8");
      assert.equal(res.headers.get("x-request-id"), "topup-502");
      const body = (await res.json()) as { success: boolean; error: { code: string; message: string }; requestId: string };
      assert.deepEqual([body.success, body.error.code, body.requestId], [false, "UPSTREAM_UNAVAILABLE", "topup-502"]);
    });

    test("an upstream that does not answer within upstreamTimeoutMs is 504 UPSTREAM_TIMEOUT, in the API's style", async () => {
      const [airtime, shop] = [await keyOf("airtime"), await keyOf("shop")];
      const timed = async (path: string, key: string) => {
        const started = Date.now();
        const res = await call(path, key);
        return { res, took: Date.now() - started };
      };
      // Both at once: undici's timers tick every half second, so each takes up to a second.
      const [v2, problem] = await Promise.all([timed("/hang", airtime), timed("/hangs", shop)]); // /hangs: shop's, not under airtime's /hang

      assert.equal(v2.res.status, 504);
      assert.ok(v2.took >= 180 && v2.took < 3000, `answered after ${v2.took} ms for a 200 ms timeout`);
      assert.equal(v2.res.headers.get("x-ratelimit-remaining"), "999");
      const body = (await v2.res.json()) as { success: boolean; error: { code: string }; requestId: string };
      assert.deepEqual([body.success, body.error.code, body.requestId], [false, "UPSTREAM_TIMEOUT", v2.res.headers.get("x-request-id")]);

      assert.equal(problem.res.status, 504);
      assert.equal(problem.res.headers.get("content-type"), "application/problem+json; charset=utf-8");
      assert.equal(((await problem.res.json()) as { code: string }).code, "UPSTREAM_TIMEOUT");
      assert.equal((await call("/after", shop)).status, 200, "and keygate serves on");
    });

    test("keygate's own store down is 503 STORE_UNAVAILABLE with Retry-After, and nothing is forwarded", async () => {
      let down = false;
      const memory = createMemoryStore();
      const store = Object.assign(Object.create(memory) as typeof memory, {
        getKeyByHash: async (hash: string) => {
          if (down) throw new KeygateError("STORE_UNAVAILABLE", "The memory store is unreachable; retry shortly.", 503);
          return memory.getKeyByHash(hash);
        },
      });
      const local = await startGateway({ server: { gatewayPort: 0 }, apis: [{ id: "topup", keyFormat: { prefix: "sk" }, upstream: up.url, errorStyle: "topup" }] }, { store });
      try {
        const before = up.requestCount();
        down = true;
        const res = await fetch(`${local.gatewayUrl}/orders`, { headers: { authorization: `Bearer sk_live_${"a".repeat(32)}` }, signal: AbortSignal.timeout(5000) });
        assert.equal(res.status, 503, await res.clone().text());
        assert.equal(res.headers.get("retry-after"), "1");
        const body = (await res.json()) as { success: boolean; error: { code: string }; requestId: string };
        assert.deepEqual([body.success, body.error.code, body.requestId], [false, "STORE_UNAVAILABLE", res.headers.get("x-request-id")]);
        assert.equal(up.requestCount(), before);
      } finally {
        await local.close();
      }
    });

    test("the upstream's own 4xx and 5xx pass through untouched and are not retried", async () => {
      const key = await keyOf("shop");
      for (const status of [404, 500, 502, 503]) {
        const before = up.requestCount();
        const res = await call(`/status/${status}?q=1`, key);
        assert.equal(res.status, status);
        assert.equal(res.headers.get("content-type"), "application/json", "the upstream's body, not a keygate error");
        assert.equal(res.headers.get("x-upstream"), "main");
        const echo = (await res.json()) as Echo;
        assert.equal(echo.path, `/status/${status}?q=1`);
        assert.equal(up.requestCount(), before + 1, `${status} reached the upstream once`);
      }
    });
  });

  test("hop-by-hop fields are not forwarded, either way", async () => {
    const key = await keyOf("shop");
    const res = await rawRequest(gw.gatewayUrl, {
      path: "/hop-by-hop",
      headers: {
        authorization: `Bearer ${key}`,
        connection: "keep-alive, x-client-hop",
        "x-client-hop": "for keygate only",
        "keep-alive": "timeout=5",
        "proxy-connection": "keep-alive",
        te: "trailers",
        "x-end-to-end": "kept",
      },
    });
    assert.equal(res.status, 200);
    const echo = JSON.parse(res.body) as Echo;
    for (const name of ["x-client-hop", "keep-alive", "proxy-connection", "te"]) assert.equal(echo.headers[name], undefined, `${name} reached the upstream`);
    assert.equal(echo.headers["x-end-to-end"], "kept");
    assert.notEqual(echo.headers.authorization, `Bearer ${key}`);

    assert.equal(res.headers["x-upstream-hop"], undefined, "a field the upstream's Connection names");
    assert.equal(res.headers["proxy-connection"], undefined);
    assert.equal(res.headers["x-end-to-end"], "kept");
    assert.doesNotMatch(String(res.headers.connection), /x-upstream-hop/);
  });
});
