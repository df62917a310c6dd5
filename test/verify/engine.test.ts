/**
 * The verification pipeline through `createKeygate`: every verdict code, the cache in front of
 * the store, usage batching, and keys imported as plaintext or as SHA-256 hashes.
 */
import { createHash, createHmac } from "node:crypto";
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createKeygate } from "../../src/keygate.js";
import { KeygateError } from "../../src/lib/errors.js";
import { createMemoryStore } from "../../src/store/memory/index.js";
import { VERDICT_CODES } from "../../src/verify/codes.js";
import type { VerdictCode } from "../../src/verify/codes.js";
import type { Verdict } from "../../src/verify/engine.js";
import { createTestKeygate, T0 } from "../support/keygate.js";
import type { TestKeygate } from "../support/keygate.js";

const LEGACY_PATTERN = "^[A-Z0-9]{8}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{5}$";

const CONFIG = {
  apis: [
    { id: "pay", keyFormat: { prefix: "pk", length: 32, checksum: true }, scopes: ["read", "write", "admin"], defaultScopes: ["read"] },
    // The same key format as "pay": a key of one is well-formed for the other.
    { id: "mail", keyFormat: { prefix: "pk", length: 32, checksum: true }, scopes: ["read"] },
    { id: "airtime", keyFormat: { environments: ["live"], environmentInKey: false, alphabet: "uuid", importPattern: LEGACY_PATTERN } },
  ],
};

const sha256 = (text: string): string => createHash("sha256").update(text).digest("hex");

/** Codes asserted so far; the last test checks that every code of VERDICT_CODES was. */
const seen = new Set<VerdictCode>();

function expectCode(verdict: Verdict, code: VerdictCode): Verdict {
  assert.equal(verdict.code, code, `expected ${code}, got ${JSON.stringify(verdict)}`);
  assert.equal(verdict.valid, code === "VALID");
  seen.add(code);
  return verdict;
}

const open: TestKeygate[] = [];
async function setup(config: Record<string, unknown> & { apis: unknown[] } = CONFIG): Promise<TestKeygate> {
  const t = await createTestKeygate(config);
  open.push(t);
  return t;
}
after(async () => { for (const t of open) await t.keygate.close(); });

describe("verdict codes", () => {
  test("a stored key is VALID and the verdict describes it", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId, name: "server", metadata: { plan: "pro" } });
    assert.match(created.key, /^pk_live_[0-9A-Za-z]{32}$/);
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID");
    assert.deepEqual(verdict, {
      valid: true, code: "VALID", api: "pay", keyId: created.id, accountId, applicationId: null, name: "server",
      environment: "live", scopes: ["read"], expiresAt: null, metadata: { plan: "pro" },
    });
  });

  test("a test-environment key is VALID with environment test", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, environment: "test" });
    assert.ok(key.startsWith("pk_test_"));
    assert.equal(expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID").environment, "test");
  });

  test("no key, an empty key or a null key is MISSING_CREDENTIALS", async () => {
    const { keygate, calls } = await setup();
    expectCode(await keygate.verifyKey({ api: "pay" }), "MISSING_CREDENTIALS");
    expectCode(await keygate.verifyKey({ api: "pay", key: "" }), "MISSING_CREDENTIALS");
    expectCode(await keygate.verifyKey({ api: "pay", key: null }), "MISSING_CREDENTIALS");
    expectCode(await keygate.verifyKey({ api: "pay", key: undefined, ip: "203.0.113.1" }), "MISSING_CREDENTIALS");
    assert.equal(calls.total(), 0);
  });

  test("a key not in the API's format is MALFORMED_KEY and never touches the store", async () => {
    const { keygate, calls, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    calls.reset();
    const malformed = [
      "garbage",
      key.slice(0, -1), // truncated
      key + "x", // extended
      key.slice(0, 10) + (key[10] === "a" ? "b" : "a") + key.slice(11), // a typo: the checksum no longer matches
      key.replace("pk_live_", "pk_prod_"),
      key.replace("pk_", "sk_"),
      "pk_live_" + "!".repeat(32),
      "x".repeat(513),
      "x".repeat(100_000),
    ];
    for (const bad of malformed) expectCode(await keygate.verifyKey({ api: "pay", key: bad }), "MALFORMED_KEY");
    // Also from a client address, where the lockout is consulted (it lives outside the store).
    expectCode(await keygate.verifyKey({ api: "pay", key: "garbage", ip: "198.51.100.200" }), "MALFORMED_KEY");
    assert.equal(calls.count("getKeyByHash"), 0);
    assert.equal(calls.total(), 0, "no store call of any kind");
  });

  test("a well-formed key that was never issued is NOT_FOUND", async () => {
    const { keygate } = await setup();
    const forged = keygate.apis.get("pay")!.codec.generate("live");
    expectCode(await keygate.verifyKey({ api: "pay", key: forged }), "NOT_FOUND");
  });

  test("a key of API pay presented to API mail is NOT_FOUND", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    assert.notEqual(keygate.apis.get("mail")!.codec.parse(key), null, "the key is well-formed for mail too");
    expectCode(await keygate.verifyKey({ api: "mail", key }), "NOT_FOUND");
    // And the other way round, with the key cached by a valid verification first.
    const mailKey = (await keygate.keys.create({ api: "mail", accountId })).key;
    expectCode(await keygate.verifyKey({ api: "mail", key: mailKey }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key: mailKey }), "NOT_FOUND");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
  });

  test("a key is EXPIRED once the clock reaches expiresAt", async () => {
    const { keygate, clock, accountId } = await setup();
    const expiresAt = new Date(T0 + 3_600_000).toISOString();
    const created = await keygate.keys.create({ api: "pay", accountId, expiresAt });
    assert.equal(expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID").expiresAt, expiresAt);
    clock.advance(3_600_000 - 1);
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID");
    clock.advance(1);
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "EXPIRED");
    assert.equal(verdict.keyId, created.id);
    assert.equal(verdict.expiresAt, expiresAt);
    assert.equal((await keygate.keys.get(created.id)).status, "expired");
  });

  test("a revoked key is rejected with REVOKED on the very next verification", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId });
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID"); // now cached
    const revoked = await keygate.keys.revoke(created.id);
    assert.equal(revoked.status, "revoked");
    assert.equal(revoked.revokedAt, new Date(T0).toISOString());
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "REVOKED");
    // Revoking again changes nothing.
    assert.deepEqual(await keygate.keys.revoke(created.id), revoked);
  });

  test("a disabled key is DISABLED, and VALID again once re-enabled", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId });
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID");
    await keygate.keys.update(created.id, { enabled: false });
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "DISABLED");
    await keygate.keys.update(created.id, { enabled: true });
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID");
  });

  test("a rotated key stays VALID during its grace period and is ROTATED after it; its successor is VALID", async () => {
    const { keygate, clock, accountId } = await setup();
    const old = await keygate.keys.create({ api: "pay", accountId, scopes: ["read", "write"] });
    expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "VALID");
    const { key: successor, previous } = await keygate.keys.rotate(old.id, { gracePeriodSeconds: 60 });
    assert.equal(previous.status, "rotating");
    assert.equal(previous.replacedBy, successor.id);
    assert.equal(previous.graceEndsAt, new Date(T0 + 60_000).toISOString());
    assert.notEqual(successor.key, old.key);
    assert.deepEqual(successor.scopes, ["read", "write"], "the successor inherits the scopes");

    expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key: successor.key }), "VALID");
    clock.advance(59_999);
    expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "VALID");
    clock.advance(1);
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "ROTATED");
    assert.equal(verdict.keyId, old.id);
    expectCode(await keygate.verifyKey({ api: "pay", key: successor.key }), "VALID");
    assert.equal((await keygate.keys.get(old.id)).status, "rotated");
  });

  test("a key rotated without a grace period is ROTATED at once", async () => {
    const { keygate, accountId } = await setup();
    const old = await keygate.keys.create({ api: "pay", accountId });
    expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "VALID");
    const { key: successor } = await keygate.keys.rotate(old.id);
    expectCode(await keygate.verifyKey({ api: "pay", key: old.key }), "ROTATED");
    expectCode(await keygate.verifyKey({ api: "pay", key: successor.key }), "VALID");
    await assert.rejects(keygate.keys.rotate(old.id), (e: unknown) => e instanceof KeygateError && e.code === "KEY_NOT_ROTATABLE");
  });

  test("an IPv4 CIDR allowlist admits addresses inside it and answers IP_NOT_ALLOWED outside", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId, ipAllowlist: ["198.51.100.0/24", "203.0.113.45"] });
    assert.deepEqual(created.ipAllowlist, ["198.51.100.0/24", "203.0.113.45/32"]);
    const verify = (ip?: string) => keygate.verifyKey({ api: "pay", key: created.key, ip });
    expectCode(await verify("198.51.100.0"), "VALID");
    expectCode(await verify("198.51.100.255"), "VALID");
    expectCode(await verify("203.0.113.45"), "VALID");
    expectCode(await verify("198.51.101.1"), "IP_NOT_ALLOWED");
    expectCode(await verify("203.0.113.46"), "IP_NOT_ALLOWED");
    expectCode(await verify("2001:db8::1"), "IP_NOT_ALLOWED");
    const verdict = expectCode(await verify("10.0.0.1"), "IP_NOT_ALLOWED");
    assert.equal(verdict.keyId, created.id);
  });

  test("an IPv6 CIDR allowlist admits addresses inside it only", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, ipAllowlist: ["2001:db8:abcd::/48"] });
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "2001:db8:abcd:12::1" }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "2001:0db8:abcd:0000:0000:0000:0000:0001" }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "2001:db8:abce::1" }), "IP_NOT_ALLOWED");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }), "IP_NOT_ALLOWED");
  });

  test("an IPv4-mapped IPv6 client address matches an IPv4 allowlist entry", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, ipAllowlist: ["198.51.100.0/24"] });
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "::ffff:198.51.100.7" }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "::ffff:c633:6407" }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "::ffff:198.51.101.7" }), "IP_NOT_ALLOWED");
  });

  test("a key with an allowlist is IP_NOT_ALLOWED when no client address is given", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, ipAllowlist: ["198.51.100.0/24"] });
    expectCode(await keygate.verifyKey({ api: "pay", key }), "IP_NOT_ALLOWED");
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "" }), "IP_NOT_ALLOWED");
  });

  test("an account's allowlist for an environment applies to its keys of that environment only", async () => {
    const { keygate } = await setup();
    const account = await keygate.accounts.create({ name: "Topup", email: "ops@topup.test", ipAllowlists: { live: ["198.51.100.0/24"] } });
    const live = await keygate.keys.create({ api: "pay", accountId: account.id, environment: "live" });
    const testKey = await keygate.keys.create({ api: "pay", accountId: account.id, environment: "test" });
    expectCode(await keygate.verifyKey({ api: "pay", key: live.key, ip: "198.51.100.9" }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key: live.key, ip: "203.0.113.9" }), "IP_NOT_ALLOWED");
    expectCode(await keygate.verifyKey({ api: "pay", key: testKey.key, ip: "203.0.113.9" }), "VALID");
    // Changing the account's list is enforced on the next verification.
    await keygate.accounts.update(account.id, { ipAllowlists: { live: [] } });
    expectCode(await keygate.verifyKey({ api: "pay", key: live.key, ip: "203.0.113.9" }), "VALID");
  });

  test("a client that failed too often is IP_BLOCKED, even with a valid key; retryAfter and reset say when it ends", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    const ip = "203.0.113.77";
    for (let i = 0; i < 4; i++) await keygate.verifyKey({ api: "pay", key: "garbage", ip });
    const fifth = expectCode(await keygate.verifyKey({ api: "pay", key: "garbage", ip }), "MALFORMED_KEY");
    assert.equal(fifth.attemptsLeft, 0);
    assert.equal(fifth.retryAfter, 900);
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key, ip }), "IP_BLOCKED");
    assert.equal(verdict.attemptsLeft, 0);
    assert.equal(verdict.retryAfter, 900);
    // reset: the same instant as epoch seconds, the end of the block.
    assert.equal(fifth.reset, (T0 + 900_000) / 1000);
    assert.equal(verdict.reset, (T0 + 900_000) / 1000);
  });

  test("a key lacking a required scope is INSUFFICIENT_SCOPE with the missing scopes", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId, scopes: ["read"] });
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key, scopes: ["read"] }), "VALID");
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key: created.key, scopes: ["read", "write", "admin"] }), "INSUFFICIENT_SCOPE");
    assert.deepEqual(verdict.missingScopes, ["write", "admin"]);
    assert.equal(verdict.keyId, created.id);
    assert.deepEqual(verdict.scopes, ["read"]);
  });

  test("anyScopes needs one of the listed scopes", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, scopes: ["read"] });
    expectCode(await keygate.verifyKey({ api: "pay", key, anyScopes: ["write", "read"] }), "VALID");
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key, anyScopes: ["write", "admin"] }), "INSUFFICIENT_SCOPE");
    assert.deepEqual(verdict.missingScopes, ["write", "admin"]);
  });

  test("a key over its rate limit is RATE_LIMITED with retryAfter and the window's state", async () => {
    const { keygate, clock, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, rateLimit: { limit: 3, windowSeconds: 60 } });
    clock.set(T0 + 10_000);
    const reset = (T0 + 60_000) / 1000;
    for (const remaining of [2, 1, 0]) {
      const ok = expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
      assert.deepEqual(ok.ratelimit, { limit: 3, remaining, reset, window: 60 });
    }
    const limited = expectCode(await keygate.verifyKey({ api: "pay", key }), "RATE_LIMITED");
    assert.deepEqual(limited.ratelimit, { limit: 3, remaining: 0, reset, window: 60 });
    assert.equal(limited.retryAfter, 50);
    assert.equal(limited.reset, reset, "reset: when a retry can succeed, as ratelimit.reset");
    assert.ok(Number.isInteger(limited.ratelimit!.reset) && limited.ratelimit!.reset < 1e11, "reset is epoch seconds");
  });

  test("the checks run in the documented order: revoked before expired before disabled before allowlist before scope", async () => {
    const { keygate, clock, accountId } = await setup();
    const created = await keygate.keys.create({
      api: "pay", accountId, scopes: ["read"], ipAllowlist: ["198.51.100.0/24"], expiresAt: new Date(T0 + 1000).toISOString(),
    });
    const verify = () => keygate.verifyKey({ api: "pay", key: created.key, ip: "203.0.113.5", scopes: ["write"] });
    expectCode(await verify(), "IP_NOT_ALLOWED");
    await keygate.keys.update(created.id, { enabled: false });
    expectCode(await verify(), "DISABLED");
    clock.advance(1000);
    expectCode(await verify(), "EXPIRED");
    await keygate.keys.revoke(created.id);
    expectCode(await verify(), "REVOKED");
  });
});

describe("errors that are not verdicts", () => {
  test("an unknown api throws KeygateError UNKNOWN_API", async () => {
    const { keygate } = await setup();
    await assert.rejects(keygate.verifyKey({ api: "nope", key: "anything" }), (e: unknown) => {
      assert.ok(e instanceof KeygateError);
      assert.equal(e.code, "UNKNOWN_API");
      assert.equal(e.status, 400);
      return true;
    });
  });

  test("an ip that is not an address throws KeygateError INVALID_IP", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    for (const ip of ["not-an-ip", "300.1.1.1", "198.51.100.0/24", "1.2.3.4 ", "::g"]) {
      await assert.rejects(keygate.verifyKey({ api: "pay", key, ip }), (e: unknown) => e instanceof KeygateError && e.code === "INVALID_IP" && e.status === 400, ip);
    }
  });
});

describe("ports that answer asynchronously", () => {
  test("a limiter and a lockout that both fail: the verification rejects with the limiter's error, and neither failure goes unhandled", async () => {
    const store = createMemoryStore();
    const keygate = await createKeygate({
      store,
      config: { apis: [{ id: "pay", keyFormat: { prefix: "pk" }, rateLimit: { limit: 10, windowSeconds: 60 } }], cache: { changePollMs: 0 } },
      limiter: { consume: () => Promise.reject(new Error("limiter down")), peek: () => Promise.reject(new Error("limiter down")) },
      lockout: {
        check: () => Promise.reject(new Error("lockout down")),
        recordFailure: () => Promise.reject(new Error("lockout down")),
        recordSuccess: () => Promise.reject(new Error("lockout down")),
      },
    });
    open.push({ keygate } as TestKeygate);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
    process.on("unhandledRejection", onUnhandled);
    try {
      const account = await keygate.accounts.create({ name: "Acme", email: "ops@acme.test" });
      const { key } = await keygate.keys.create({ api: "pay", accountId: account.id });
      // The first verification reads the lockout before the store (a cache miss); the second
      // is the hot path, where the lockout read and the rate limit travel together.
      await assert.rejects(keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }), /lockout down/);
      // No client address, no lockout: the key is loaded (and cached), then the limiter fails.
      await assert.rejects(keygate.verifyKey({ api: "pay", key }), /limiter down/);
      await assert.rejects(keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }), /limiter down/);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("ports that answer asynchronously: a lockout read shared by concurrent verifications", () => {
  const BLOCKED_UNTIL = Date.now() + 60_000;
  const blocked = { blocked: true, attemptsLeft: 0, blockedUntil: BLOCKED_UNTIL };

  /**
   * A keygate whose limiter and lockout answer when the test says: every lockout check of the
   * batch gets one shared promise, as the Redis lockout gives concurrent checks of one client.
   */
  async function controlled() {
    // The rate limits answer when `openLimits` is called, each time for those waiting then.
    let openLimits: () => void = () => {};
    let limits = Promise.resolve();
    const closeLimits = (): void => { limits = new Promise<void>((resolve) => { openLimits = resolve; }); };
    let answerLockout: (state: typeof blocked | Error) => void = () => {};
    const lockoutRead = new Promise<typeof blocked>((resolve, reject) => {
      answerLockout = (state) => { if (state instanceof Error) reject(state); else resolve(state); };
    });
    const keygate = await createKeygate({
      store: createMemoryStore(),
      config: { apis: [{ id: "pay", keyFormat: { prefix: "pk" }, rateLimit: { limit: 10, windowSeconds: 60 } }], cache: { changePollMs: 0 } },
      limiter: {
        consume: (_id, limit, windowMs, now) => limits.then(() => ({ allowed: true, limit, remaining: limit - 1, resetAt: now - (now % windowMs) + windowMs })),
        peek: (_id, limit, windowMs, now) => Promise.resolve({ allowed: true, limit, remaining: limit, resetAt: now - (now % windowMs) + windowMs }),
      },
      lockout: {
        check: () => lockoutRead,
        recordFailure: () => Promise.resolve(blocked),
        recordSuccess: () => Promise.resolve(),
      },
    });
    open.push({ keygate } as TestKeygate);
    const account = await keygate.accounts.create({ name: "Acme", email: "ops@acme.test" });
    const { key } = await keygate.keys.create({ api: "pay", accountId: account.id });
    // Cached without a client address (no lockout read), so the batch below takes the hot path.
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
    closeLimits();
    return { keygate, key, answerLockout, openLimits: () => openLimits() };
  }

  test("the lockout answers before the rate limits (the Redis order): every verification of the batch is IP_BLOCKED", async () => {
    const { keygate, key, answerLockout, openLimits } = await controlled();
    const batch = Array.from({ length: 5 }, () => keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }));
    answerLockout(blocked);
    await new Promise((resolve) => setTimeout(resolve, 10));
    openLimits();
    for (const verdict of await Promise.all(batch)) {
      expectCode(verdict, "IP_BLOCKED");
      assert.equal(verdict.reset, Math.ceil(BLOCKED_UNTIL / 1000));
    }
  });

  test("the lockout answers after the rate limits: every verification waits for it and is IP_BLOCKED", async () => {
    const { keygate, key, answerLockout, openLimits } = await controlled();
    const batch = Array.from({ length: 5 }, () => keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }));
    openLimits();
    // The rate limits have answered; the lockout has not.
    await new Promise((resolve) => setTimeout(resolve, 10));
    answerLockout(blocked);
    for (const verdict of await Promise.all(batch)) expectCode(verdict, "IP_BLOCKED");
  });

  test("a shared lockout read that fails fails every verification of the batch, and nothing goes unhandled", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason); };
    process.on("unhandledRejection", onUnhandled);
    try {
      const { keygate, key, answerLockout, openLimits } = await controlled();
      const batch = Array.from({ length: 3 }, () => keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1" }));
      answerLockout(new Error("lockout down"));
      await new Promise((resolve) => setTimeout(resolve, 10));
      openLimits();
      for (const outcome of await Promise.allSettled(batch)) {
        assert.equal(outcome.status, "rejected");
        assert.match(String((outcome as PromiseRejectedResult).reason), /lockout down/);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});

describe("cache", () => {
  test("a cached key costs no store read on its second verification", async () => {
    const { keygate, calls, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    calls.reset();
    expectCode(await keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1", scopes: ["read"] }), "VALID");
    assert.equal(calls.count("getKeyByHash"), 1);
    calls.reset();
    for (let i = 0; i < 10; i++) expectCode(await keygate.verifyKey({ api: "pay", key, ip: "198.51.100.1", scopes: ["read"] }), "VALID");
    assert.equal(calls.total(), 0);
  });

  test("a cached key of one API presented to an API of another format is MALFORMED_KEY, not NOT_FOUND", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId });
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
    expectCode(await keygate.verifyKey({ api: "airtime", key }), "MALFORMED_KEY");
    expectCode(await keygate.verifyKey({ api: "mail", key }), "NOT_FOUND");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
  });

  test("a cached key with memory limits is verified synchronously: its promise is settled when returned", async () => {
    const { keygate, accountId } = await setup();
    const { key } = await keygate.keys.create({ api: "pay", accountId, rateLimit: { limit: 100, windowSeconds: 60 } });
    const request = { api: "pay", key, ip: "198.51.100.1", scopes: ["read"] };
    expectCode(await keygate.verifyKey(request), "VALID"); // the first one reads the store
    const order: string[] = [];
    const pending = keygate.verifyKey(request).then((v) => { order.push(`verdict ${v.code}`); });
    await Promise.resolve().then(() => { order.push("next microtask"); });
    await pending;
    // A settled promise runs its callback in the first microtask after it; an asynchronous
    // verification would still be on its way then.
    assert.deepEqual(order, ["verdict VALID", "next microtask"]);
  });

  test("an unknown key is remembered too: repeated NOT_FOUND costs one store read", async () => {
    const { keygate, calls } = await setup();
    const forged = keygate.apis.get("pay")!.codec.generate("live");
    for (let i = 0; i < 5; i++) expectCode(await keygate.verifyKey({ api: "pay", key: forged }), "NOT_FOUND");
    assert.equal(calls.count("getKeyByHash"), 1);
  });

  test("a key created after its NOT_FOUND was cached is VALID at once", async () => {
    const { keygate, accountId } = await setup();
    const key = keygate.apis.get("pay")!.codec.generate("live");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "NOT_FOUND");
    await keygate.keys.import("pay", [{ accountId, key }]);
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
  });

  test("every change to a cached key is enforced on the very next verification", async () => {
    const { keygate, accountId } = await setup();
    const created = await keygate.keys.create({ api: "pay", accountId, scopes: ["read"] });
    const verify = (ip = "198.51.100.1") => keygate.verifyKey({ api: "pay", key: created.key, ip, scopes: ["read"] });
    expectCode(await verify(), "VALID");
    await keygate.keys.update(created.id, { scopes: ["write"] });
    expectCode(await verify(), "INSUFFICIENT_SCOPE");
    await keygate.keys.update(created.id, { scopes: ["read", "write"] });
    expectCode(await verify(), "VALID");
    await keygate.keys.update(created.id, { ipAllowlist: ["203.0.113.0/24"] });
    expectCode(await verify(), "IP_NOT_ALLOWED");
    expectCode(await verify("203.0.113.1"), "VALID");
    await keygate.keys.update(created.id, { ipAllowlist: [] });
    expectCode(await verify(), "VALID");
    await keygate.keys.update(created.id, { rateLimit: { limit: 1, windowSeconds: 3600 } });
    expectCode(await verify(), "VALID");
    expectCode(await verify(), "RATE_LIMITED");
    await keygate.keys.update(created.id, { rateLimit: null });
    expectCode(await verify(), "VALID");
    await keygate.keys.update(created.id, { name: "renamed", metadata: { tier: 2 } });
    const verdict = expectCode(await verify(), "VALID");
    assert.equal(verdict.name, "renamed");
    assert.deepEqual(verdict.metadata, { tier: 2 });
    await keygate.keys.update(created.id, { expiresAt: new Date(T0 + 1).toISOString() });
    assert.equal(expectCode(await verify(), "VALID").expiresAt, new Date(T0 + 1).toISOString());
    await keygate.keys.revoke(created.id);
    expectCode(await verify(), "REVOKED");
  });
});

describe("usage", () => {
  test("usageCount and lastUsedAt reflect verifications after flush(), written in one batch", async () => {
    const { keygate, clock, calls, accountId } = await setup();
    const a = await keygate.keys.create({ api: "pay", accountId });
    const b = await keygate.keys.create({ api: "pay", accountId });
    calls.reset();
    for (let i = 0; i < 10; i++) {
      clock.advance(1000);
      expectCode(await keygate.verifyKey({ api: "pay", key: a.key }), "VALID");
    }
    expectCode(await keygate.verifyKey({ api: "pay", key: b.key }), "VALID");
    // Failures are not usage.
    expectCode(await keygate.verifyKey({ api: "pay", key: a.key, scopes: ["admin"] }), "INSUFFICIENT_SCOPE");
    assert.equal(calls.count("recordUsage"), 0, "no write per request");
    // Reads before the flush already include what is pending.
    assert.equal((await keygate.keys.get(a.id)).usageCount, 10);

    await keygate.flush();
    assert.equal(calls.count("recordUsage"), 1, "one batch for both keys");
    const storedA = await keygate.store.getKey(a.id);
    assert.equal(storedA!.usageCount, 10);
    assert.equal(storedA!.lastUsedAt, T0 + 10_000);
    assert.equal((await keygate.store.getKey(b.id))!.usageCount, 1);
    const viewA = await keygate.keys.get(a.id);
    assert.equal(viewA.usageCount, 10);
    assert.equal(viewA.lastUsedAt, new Date(T0 + 10_000).toISOString());

    clock.advance(5000);
    expectCode(await keygate.verifyKey({ api: "pay", key: a.key }), "VALID");
    await keygate.flush();
    await keygate.flush(); // nothing pending: no write
    assert.equal(calls.count("recordUsage"), 2);
    assert.equal((await keygate.store.getKey(a.id))!.usageCount, 11);
    assert.equal((await keygate.store.getKey(a.id))!.lastUsedAt, T0 + 15_000);
  });

  test("close() flushes pending usage", async () => {
    const { keygate, calls, accountId } = await createTestKeygate(CONFIG);
    const { id, key } = await keygate.keys.create({ api: "pay", accountId });
    for (let i = 0; i < 3; i++) await keygate.verifyKey({ api: "pay", key });
    const store = keygate.store;
    await keygate.close();
    assert.equal(calls.count("recordUsage"), 1);
    assert.equal((await store.getKey(id))!.usageCount, 3);
  });
});

describe("imported keys", () => {
  test("plaintext keys of the native format and of importPattern verify, with their environment", async () => {
    const { keygate, accountId } = await setup();
    const native = keygate.apis.get("pay")!.codec.generate("test");
    const [view] = await keygate.keys.import("pay", [{ accountId, key: native }]);
    assert.equal(view!.environment, "test");
    assert.equal(view!.source, "imported");
    assert.equal(view!.start, native.slice(0, 12));
    assert.equal(expectCode(await keygate.verifyKey({ api: "pay", key: native }), "VALID").environment, "test");

    const legacy = "C8000000-000G-4474-0001-J0000";
    await keygate.keys.import("airtime", [{ accountId, key: legacy, scopes: [] }]);
    expectCode(await keygate.verifyKey({ api: "airtime", key: legacy }), "VALID");
    expectCode(await keygate.verifyKey({ api: "airtime", key: "C8000000-000G-4474-0001-J0001" }), "NOT_FOUND");
  });

  test("keys imported as SHA-256 hashes verify by their plaintext", async () => {
    const { keygate, accountId } = await setup();
    const key = keygate.apis.get("pay")!.codec.generate("live");
    const [view] = await keygate.keys.import("pay", [{ accountId, hash: sha256(key).toUpperCase() }]);
    assert.equal(view!.start, null);
    assert.equal((await keygate.store.getKey(view!.id))!.hash, sha256(key));
    const verdict = expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
    assert.equal(verdict.keyId, view!.id);
  });

  test("with hashSecret set, keys are stored as HMAC-SHA-256 and imported plaintext keys verify", async () => {
    const { keygate, accountId } = await setup({ ...CONFIG, security: { hashSecret: "pepper" } });
    const created = await keygate.keys.create({ api: "pay", accountId });
    const stored = (await keygate.store.getKey(created.id))!;
    assert.equal(stored.hashAlgorithm, "hmac-sha256");
    assert.equal(stored.hash, createHmac("sha256", "pepper").update(created.key).digest("hex"));
    expectCode(await keygate.verifyKey({ api: "pay", key: created.key }), "VALID");

    const plain = keygate.apis.get("pay")!.codec.generate("live");
    const [imported] = await keygate.keys.import("pay", [{ accountId, key: plain }]);
    assert.equal((await keygate.store.getKey(imported!.id))!.hashAlgorithm, "hmac-sha256");
    expectCode(await keygate.verifyKey({ api: "pay", key: plain }), "VALID");
  });

  test("with hashSecret set, keys imported as plain SHA-256 hashes still verify", async () => {
    const { keygate, accountId } = await setup({ ...CONFIG, security: { hashSecret: "pepper" } });
    const key = keygate.apis.get("pay")!.codec.generate("live");
    const [view] = await keygate.keys.import("pay", [{ accountId, hash: sha256(key) }]);
    assert.equal((await keygate.store.getKey(view!.id))!.hashAlgorithm, "sha256");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
    // A key that is neither is still unknown.
    expectCode(await keygate.verifyKey({ api: "pay", key: keygate.apis.get("pay")!.codec.generate("live") }), "NOT_FOUND");
  });

  test("with hashSecret set, a cached key imported as a SHA-256 hash is REVOKED on the very next verification", async () => {
    const { keygate, accountId } = await setup({ ...CONFIG, security: { hashSecret: "pepper" } });
    const key = keygate.apis.get("pay")!.codec.generate("live");
    const [view] = await keygate.keys.import("pay", [{ accountId, hash: sha256(key) }]);
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID"); // now cached
    await keygate.keys.update(view!.id, { scopes: ["write"] });
    expectCode(await keygate.verifyKey({ api: "pay", key, scopes: ["read"] }), "INSUFFICIENT_SCOPE");
    await keygate.keys.revoke(view!.id);
    expectCode(await keygate.verifyKey({ api: "pay", key }), "REVOKED");
  });

  test("with hashSecret set, a key that was NOT_FOUND before its SHA-256 hash was imported is VALID at once", async () => {
    const { keygate, accountId } = await setup({ ...CONFIG, security: { hashSecret: "pepper" } });
    const key = keygate.apis.get("pay")!.codec.generate("live");
    expectCode(await keygate.verifyKey({ api: "pay", key }), "NOT_FOUND");
    await keygate.keys.import("pay", [{ accountId, hash: sha256(key) }]);
    expectCode(await keygate.verifyKey({ api: "pay", key }), "VALID");
  });

  test("a keygate started on a store that already holds SHA-256 hashes finds them with hashSecret set", async () => {
    const first = await setup();
    const key = first.keygate.apis.get("pay")!.codec.generate("live");
    await first.keygate.keys.import("pay", [{ accountId: first.accountId, hash: sha256(key) }]);
    const second = await createKeygate({ config: { ...CONFIG, security: { hashSecret: "pepper" }, cache: { changePollMs: 0 } }, store: first.keygate.store });
    try {
      expectCode(await second.verifyKey({ api: "pay", key }), "VALID");
    } finally {
      await second.close();
    }
  });

  test("with hashSecret set, SHA-256 hashes imported by another process on the same store verify once its changes are read", async () => {
    const config = { ...CONFIG, security: { hashSecret: "pepper" } };
    const importer = await setup(config);
    // A second node on the same store, started before any SHA-256 hash existed.
    const node = await createKeygate({ config: { ...config, cache: { changePollMs: 0, maxKeys: 1000 } }, store: importer.keygate.store, clock: importer.clock });
    try {
      const key = node.apis.get("pay")!.codec.generate("live");
      expectCode(await node.verifyKey({ api: "pay", key }), "NOT_FOUND");
      await importer.keygate.keys.import("pay", [{ accountId: importer.accountId, hash: sha256(key) }]);
      await node.syncChanges();
      expectCode(await node.verifyKey({ api: "pay", key }), "VALID");
    } finally {
      await node.close();
    }
  });

  test("an imported key that is not in the API's format is refused without echoing it", async () => {
    const { keygate, accountId } = await setup();
    const secret = "not-a-pay-key-SECRET123";
    await assert.rejects(keygate.keys.import("pay", [{ accountId, key: secret }]), (e: unknown) => {
      assert.ok(e instanceof KeygateError);
      assert.equal(e.code, "MALFORMED_KEY");
      assert.ok(!e.message.includes(secret));
      return true;
    });
  });
});

describe("JWT credentials", () => {
  const TOKENS = {
    apis: [{
      id: "pay", keyFormat: { prefix: "pk" }, credentials: [{ type: "jwt" }],
      lockout: { enabled: true, maxAttempts: 5, windowSeconds: 900, blockSeconds: 900 },
      tokens: { ttlSeconds: 60, endpoints: [{ style: "oauth2", path: "/token" }] },
    }],
  };

  test("a token not issued by keygate is INVALID_TOKEN and counts towards the lockout; past exp it is TOKEN_EXPIRED", async () => {
    const { keygate, clock, accountId } = await setup(TOKENS);
    const app = await keygate.applications.create({ accountId, api: "pay", name: "App" });
    const { id, key } = await keygate.keys.create({ api: "pay", accountId, applicationId: app.id });
    const issued = await keygate.tokens.issue({ api: "pay", clientId: app.clientId, key });
    assert.ok(issued.ok);
    const valid = expectCode(await keygate.tokens.verify({ api: "pay", token: issued.token, ip: "203.0.113.9" }), "VALID");
    assert.equal(valid.keyId, id);
    const invalid = expectCode(await keygate.tokens.verify({ api: "pay", token: "eyJhbGciOiJub25lIn0.e30.", ip: "203.0.113.9" }), "INVALID_TOKEN");
    assert.equal(invalid.attemptsLeft, 4);
    clock.advance(60_000);
    const expired = expectCode(await keygate.tokens.verify({ api: "pay", token: issued.token, ip: "203.0.113.9" }), "TOKEN_EXPIRED");
    assert.equal(expired.attemptsLeft, undefined, "an expired genuine token is no failed attempt");
  });
});

describe("coverage of verdict codes", () => {
  test("every code in VERDICT_CODES was reached and asserted above", () => {
    assert.deepEqual([...VERDICT_CODES].filter((c) => !seen.has(c)), []);
  });
});
