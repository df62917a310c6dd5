/**
 * Rate-limit headers are computed with keygate's clock, as the verdict is: with a frozen clock
 * every figure is exact — X-RateLimit-Reset is the window's end in epoch seconds, and the IETF
 * RateLimit field's t= the seconds left until then — through the gateway and forward-auth.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createManualClock } from "../../src/lib/clock.js";
import { startGateway, startUpstream } from "./gateway-support.js";
import type { RunningGateway, Upstream } from "./gateway-support.js";

const T0 = Date.parse("2026-01-01T00:00:00Z");

describe("rate-limit headers on keygate's clock", () => {
  const clock = createManualClock(T0 + 10_000); // 10 s into a minute window
  let up: Upstream;
  let gw: RunningGateway;

  before(async () => {
    up = await startUpstream("rl");
    gw = await startGateway({
      apis: [{
        id: "shop", keyFormat: { prefix: "sk" }, lockout: { enabled: false },
        rateLimit: { limit: 2, windowSeconds: 60 }, rateLimitHeaders: { xRateLimit: true, ietf: true },
        upstream: up.url, routes: [{ path: "/orders" }],
      }],
    }, { clock });
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  const call = (key: string) => fetch(`${gw.gatewayUrl}/orders`, { headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(5000) });

  test("t= counts down with the clock, and the 429 carries Retry-After and the same reset", async () => {
    const { key } = await gw.key();
    const first = await call(key);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-ratelimit-reset"), String((T0 + 60_000) / 1000));
    assert.equal(first.headers.get("ratelimit"), '"default";r=1;t=50');
    clock.set(T0 + 45_000);
    const second = await call(key);
    assert.equal(second.headers.get("ratelimit"), '"default";r=0;t=15');
    const third = await call(key);
    assert.equal(third.status, 429);
    assert.equal(third.headers.get("retry-after"), "15");
    assert.equal(third.headers.get("ratelimit"), '"default";r=0;t=15');
    clock.set(T0 + 60_000); // the next window
    const fourth = await call(key);
    assert.equal(fourth.status, 200);
    assert.equal(fourth.headers.get("ratelimit"), '"default";r=1;t=60');
  });
});
