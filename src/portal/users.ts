import type { Clock } from "../lib/clock.js";
import { KeygateError } from "../lib/errors.js";
import { BASE62, randomString, toBase62 } from "../keys/alphabet.js";
import type { PortalUser, Store } from "../store/types.js";
import { burnVerification, hashPassword, needsRehash, passwordProblem, verifyPassword } from "./password.js";

/** A portal user as the portal and the admin API show it: never the password hash. */
export interface PortalUserView {
  id: string;
  email: string;
  name: string;
  /** The customer account the user belongs to; null for an operator without one. */
  accountId: string | null;
  /** Sees every account and provisions credentials (stored flag, or `portal.operatorEmails`). */
  operator: boolean;
  createdAt: string;
  lastSignInAt: string | null;
}

export interface NewPortalUser {
  email: string;
  password: string;
  name?: string | undefined;
  accountId?: string | null | undefined;
  operator?: boolean | undefined;
}

export interface PortalUserSettings {
  operatorEmails: readonly string[];
  lockout: { maxFailures: number; lockMinutes: number };
}

/** Portal users: creation, password checks with a lockout, password changes. */
export interface PortalUsers {
  create(input: NewPortalUser): Promise<PortalUser>;
  /** The user whose email and password these are; throws INVALID_CREDENTIALS or SIGN_IN_LOCKED. */
  authenticate(email: string, password: string): Promise<PortalUser>;
  /** Re-confirms a signed-in user's password before a sensitive step; same lockout as sign-in. */
  confirmPassword(user: PortalUser, password: string): Promise<void>;
  changePassword(user: PortalUser, current: string, next: string): Promise<PortalUser>;
  /** Sets a new password without the old one (the root key's PATCH /v1/portal/users/:id). */
  setPassword(user: PortalUser, next: string): Promise<PortalUser>;
  isOperator(user: PortalUser): boolean;
  /** True for emails of `portal.operatorEmails`, which may not sign up. */
  isOperatorEmail(email: string): boolean;
  view(user: PortalUser): PortalUserView;
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{1,63}$/;
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** `usr_` + the creation millisecond in base62 + 14 random characters, sortable like keygate's other ids. */
export const newUserId = (now: number): string => `usr_${toBase62(now, 8)}${randomString(BASE62, 14)}`;

export const checkEmail = (email: string, field = "email"): string => {
  const trimmed = email.trim();
  if (trimmed.length > 320 || !EMAIL.test(trimmed)) throw new KeygateError("INVALID_EMAIL", `${field}: ${JSON.stringify(email)} is not an email address.`, 400, { field });
  return trimmed;
};

/**
 * @example
 * const users = createPortalUsers({ store, clock, settings: config.portal });
 * const user = await users.authenticate("dev@acme.test", "correct horse battery staple");
 */
export function createPortalUsers(options: { store: Store; clock: Clock; settings: PortalUserSettings }): PortalUsers {
  const { store, clock } = options;
  const operatorEmails = new Set(options.settings.operatorEmails.map((e) => e.trim().toLowerCase()));
  const { maxFailures, lockMinutes } = options.settings.lockout;

  const locked = (until: number): KeygateError => {
    const seconds = Math.max(1, Math.ceil((until - clock.now()) / 1000));
    return new KeygateError("SIGN_IN_LOCKED", `Too many wrong passwords: signing in is locked for ${Math.ceil(seconds / 60)} more minute(s).`, 429, { retryAfter: seconds });
  };

  /** Checks a password against a user, counting failures and locking after `maxFailures` in a row. */
  const check = async (user: PortalUser, password: string): Promise<boolean> => {
    const now = clock.now();
    if (user.lockedUntil !== null && user.lockedUntil > now) throw locked(user.lockedUntil);
    if (await verifyPassword(password, user.passwordHash)) {
      const patch: Parameters<Store["updatePortalUser"]>[1] = {};
      if (user.failedSignIns !== 0 || user.lockedUntil !== null) { patch.failedSignIns = 0; patch.lockedUntil = null; }
      if (needsRehash(user.passwordHash)) patch.passwordHash = await hashPassword(password);
      if (Object.keys(patch).length > 0) await store.updatePortalUser(user.id, patch, now);
      return true;
    }
    const failures = await store.addPortalSignInFailure(user.id, now);
    if (failures !== null && failures >= maxFailures) {
      const until = now + lockMinutes * 60_000;
      await store.updatePortalUser(user.id, { failedSignIns: 0, lockedUntil: until }, now);
      throw locked(until);
    }
    return false;
  };

  const newHash = async (user: Pick<PortalUser, "email">, password: string, field: string): Promise<string> => {
    const problem = passwordProblem(password, user.email);
    if (problem) throw new KeygateError("WEAK_PASSWORD", `${field}: ${problem}`, 400, { field });
    return hashPassword(password);
  };

  const users: PortalUsers = {
    async create(input) {
      const email = checkEmail(input.email);
      const operator = input.operator ?? false;
      const accountId = input.accountId ?? null;
      if (!operator && accountId === null) {
        throw new KeygateError("ACCOUNT_REQUIRED", "accountId: a user who is not an operator belongs to an account.", 400, { field: "accountId" });
      }
      if (accountId !== null && !(await store.getAccount(accountId))) {
        throw new KeygateError("UNKNOWN_ACCOUNT", `accountId: no account with id ${JSON.stringify(accountId)}.`, 400, { field: "accountId" });
      }
      const now = clock.now();
      const user: PortalUser = {
        id: newUserId(now), email, name: (input.name ?? "").trim() || email.split("@")[0]!, accountId, operator,
        passwordHash: await newHash({ email }, input.password, "password"), failedSignIns: 0, lockedUntil: null,
        passwordChangedAt: now, lastSignInAt: null, createdAt: now, updatedAt: now,
      };
      await store.createPortalUser(user);
      return user;
    },

    async authenticate(email, password) {
      const user = await store.getPortalUserByEmail(email.trim());
      if (!user) {
        await burnVerification(password);
      } else if (await check(user, password)) {
        const now = clock.now();
        return (await store.updatePortalUser(user.id, { lastSignInAt: now }, now)) ?? user;
      }
      throw new KeygateError("INVALID_CREDENTIALS", "The email or the password is not right.", 401);
    },

    async confirmPassword(user, password) {
      // Re-read: the lock and the failure count may have changed since the session began.
      const current = (await store.getPortalUser(user.id)) ?? user;
      if (!(await check(current, password))) {
        throw new KeygateError("PASSWORD_MISMATCH", "That is not your password.", 403, { field: "password" });
      }
    },

    async changePassword(user, current, next) {
      await users.confirmPassword(user, current);
      if (current === next) throw new KeygateError("WEAK_PASSWORD", "newPassword: choose a password other than the current one.", 400, { field: "newPassword" });
      return users.setPassword(user, next);
    },

    async setPassword(user, next) {
      const now = clock.now();
      const hash = await newHash(user, next, "newPassword");
      const updated = await store.updatePortalUser(user.id, { passwordHash: hash, passwordChangedAt: now, failedSignIns: 0, lockedUntil: null }, now);
      if (!updated) throw new KeygateError("USER_NOT_FOUND", `No portal user with id ${JSON.stringify(user.id)}.`, 404);
      return updated;
    },

    isOperator: (user) => user.operator || operatorEmails.has(user.email.toLowerCase()),
    isOperatorEmail: (email) => operatorEmails.has(email.trim().toLowerCase()),

    view: (user) => ({
      id: user.id, email: user.email, name: user.name, accountId: user.accountId, operator: users.isOperator(user),
      createdAt: new Date(user.createdAt).toISOString(), lastSignInAt: iso(user.lastSignInAt),
    }),
  };
  return users;
}
