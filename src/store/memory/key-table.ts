import type { KeyListQuery, KeyRecord } from "../types.js";

/**
 * The memory store's keys, held outside the V8 heap: each record encoded once into large
 * buffers, found through hash tables of slot numbers in typed arrays. Memory for a million keys
 * is then a few hundred MB of buffers and no objects: as objects (some 400 bytes of heap
 * each, and more for the maps that index them) they made the old generation so large that
 * every young-generation collection of the process — which walks the old generation's pages —
 * cost several times more, and a million stored keys slowed the verification of cached ones
 * (bench/verify-scale.ts). Hand-rolled because no library offers an off-heap table of records
 * with string lookups; its format is private to this process, so it needs no versioning.
 *
 * A record lives in one slot, numbered in insertion order, for ever (keys are never deleted;
 * revocation is a field). Its bytes — id, hash, then the other fields as a JSON array — lie in
 * an arena of chunks; an update writes new bytes and leaves the old ones dead until a
 * compaction copies the live records into fresh chunks. The fields list queries filter on are
 * numbers in columns (strings interned once), so a listing reads no record it does not return,
 * and the fields `recordUsage` changes are columns, so counting a use rewrites nothing.
 *
 * Ids and hashes are compared and hashed as UTF-8 bytes: keygate makes both ASCII.
 *
 * @example
 * const table = new KeyTable();
 * table.insert([record]);
 * table.get(table.slotOfHash(record.hash)); // a fresh copy of the record
 */
export class KeyTable {
  private chunks: Buffer[] = [];
  /** Bytes used in the last chunk. */
  private tail = 0;
  /** Bytes of records an update replaced, and of live records, over all chunks. */
  private dead = 0;
  private live = 0;

  private count = 0;
  private chunkOf = new Uint32Array(1024);
  private offsetOf = new Uint32Array(1024);
  private lengthOf = new Uint32Array(1024);
  private apiOf = new Int32Array(1024);
  private accountOf = new Int32Array(1024);
  /** -1 for a key of no application. */
  private applicationOf = new Int32Array(1024);
  private environmentOf = new Int32Array(1024);
  private usageOf = new Float64Array(1024);
  /** NaN for a key never used. */
  private lastUsedOf = new Float64Array(1024);

  /** Open addressing, linear probing: slot + 1, 0 for an empty place. At most half full. */
  private byId = new Int32Array(2048);
  private byHash = new Int32Array(2048);

  private readonly names = new Interner();
  private scratch = Buffer.allocUnsafe(256);

  constructor(private readonly chunkBytes = 4 * 1024 * 1024) {}

  get size(): number {
    return this.count;
  }

  /** The arena: chunks allocated, bytes of current records, bytes of replaced ones not yet reclaimed. */
  get memory(): { chunks: number; live: number; dead: number } {
    return { chunks: this.chunks.length, live: this.live, dead: this.dead };
  }

  /** The slot of the key with this id, or -1. */
  slotOfId(id: string): number {
    return this.find(this.byId, id, ID);
  }

  /** The slot of the key with this hash, or -1. */
  slotOfHash(hash: string): number {
    return this.find(this.byHash, hash, HASH);
  }

  /**
   * Adds records whose ids and hashes are new (the caller checks): all of them, as nothing
   * here can fail half-way but running out of memory.
   */
  insert(records: readonly KeyRecord[]): void {
    this.reserve(this.count + records.length);
    for (const r of records) {
      const slot = this.count++;
      this.write(slot, r);
      this.usageOf[slot] = r.usageCount;
      this.lastUsedOf[slot] = r.lastUsedAt ?? Number.NaN;
      this.place(this.byId, slot, ID);
      this.place(this.byHash, slot, HASH);
    }
  }

  /** Replaces the record in `slot` with `r`, which has the same id and hash. */
  replace(slot: number, r: KeyRecord): void {
    this.dead += this.lengthOf[slot]!;
    this.live -= this.lengthOf[slot]!;
    this.write(slot, r);
    this.usageOf[slot] = r.usageCount;
    this.lastUsedOf[slot] = r.lastUsedAt ?? Number.NaN;
    if (this.dead > this.live && this.dead > this.chunkBytes) this.compact();
  }

  /** Adds uses to a key's count and moves its last use forward (never back). */
  addUsage(slot: number, count: number, lastUsedAt: number): void {
    this.usageOf[slot] = this.usageOf[slot]! + count;
    const last = this.lastUsedOf[slot]!;
    if (Number.isNaN(last) || lastUsedAt > last) this.lastUsedOf[slot] = lastUsedAt;
  }

  /** A fresh copy of the record in `slot`, the caller's to change. */
  get(slot: number): KeyRecord {
    const buf = this.chunks[this.chunkOf[slot]!]!;
    const at = this.offsetOf[slot]!;
    const end = at + this.lengthOf[slot]!;
    const idLength = buf.readUInt32LE(at);
    const hashAt = at + 4 + idLength;
    const hashLength = buf.readUInt32LE(hashAt);
    const rest = JSON.parse(buf.toString("utf8", hashAt + 4 + hashLength, end)) as Rest;
    const last = this.lastUsedOf[slot]!;
    const application = this.applicationOf[slot]!;
    return {
      id: buf.toString("utf8", at + 4, hashAt),
      api: this.names.name(this.apiOf[slot]!),
      accountId: this.names.name(this.accountOf[slot]!),
      applicationId: application < 0 ? null : this.names.name(application),
      name: rest[0], environment: this.names.name(this.environmentOf[slot]!),
      hash: buf.toString("utf8", hashAt + 4, hashAt + 4 + hashLength),
      hashAlgorithm: rest[1], start: rest[2], scopes: rest[3], ipAllowlist: rest[4], expiresAt: rest[5], rateLimit: rest[6],
      enabled: rest[7], revokedAt: rest[8], rotatedAt: rest[9], graceEndsAt: rest[10], replacedBy: rest[11], metadata: rest[12],
      source: rest[13], createdAt: rest[14], updatedAt: rest[15],
      lastUsedAt: Number.isNaN(last) ? null : last, usageCount: this.usageOf[slot]!,
    };
  }

  /** The hash of the key in `slot`, as the change feed reports it. */
  hashOf(slot: number): string {
    const buf = this.chunks[this.chunkOf[slot]!]!;
    const at = this.offsetOf[slot]!;
    const hashAt = at + 4 + buf.readUInt32LE(at);
    return buf.toString("utf8", hashAt + 4, hashAt + 4 + buf.readUInt32LE(hashAt));
  }

  /** The keys that match `q`, by id in code-unit order, after `q.after`, at most `q.limit`. */
  list(q: KeyListQuery): KeyRecord[] {
    const api = q.api === undefined ? -2 : this.names.find(q.api);
    const account = q.accountId === undefined ? -2 : this.names.find(q.accountId);
    const application = q.applicationId === undefined ? -2 : this.names.find(q.applicationId);
    // A name never stored matches no key.
    if (api === -1 || account === -1 || application === -1) return [];
    const found: Array<{ id: string; slot: number }> = [];
    for (let slot = 0; slot < this.count; slot++) {
      if ((api !== -2 && this.apiOf[slot] !== api) || (account !== -2 && this.accountOf[slot] !== account) ||
        (application !== -2 && this.applicationOf[slot] !== application)) continue;
      const id = this.idOf(slot);
      if (q.after === undefined || id > q.after) found.push({ id, slot });
    }
    found.sort((a, b) => (a.id < b.id ? -1 : 1));
    return found.slice(0, q.limit).map((x) => this.get(x.slot));
  }

  private idOf(slot: number): string {
    const buf = this.chunks[this.chunkOf[slot]!]!;
    const at = this.offsetOf[slot]!;
    return buf.toString("utf8", at + 4, at + 4 + buf.readUInt32LE(at));
  }

  /** Encodes `r` into the arena and points `slot` at it. */
  private write(slot: number, r: KeyRecord): void {
    const rest: Rest = [
      r.name, r.hashAlgorithm, r.start, r.scopes, r.ipAllowlist, r.expiresAt, r.rateLimit, r.enabled, r.revokedAt,
      r.rotatedAt, r.graceEndsAt, r.replacedBy, r.metadata, r.source, r.createdAt, r.updatedAt,
    ];
    const json = JSON.stringify(rest);
    const idLength = Buffer.byteLength(r.id);
    const hashLength = Buffer.byteLength(r.hash);
    const length = 8 + idLength + hashLength + Buffer.byteLength(json);
    const [buf, at] = this.allocate(length);
    buf.writeUInt32LE(idLength, at);
    buf.write(r.id, at + 4, "utf8");
    buf.writeUInt32LE(hashLength, at + 4 + idLength);
    buf.write(r.hash, at + 8 + idLength, "utf8");
    buf.write(json, at + 8 + idLength + hashLength, "utf8");
    this.chunkOf[slot] = this.chunks.length - 1;
    this.offsetOf[slot] = at;
    this.lengthOf[slot] = length;
    this.live += length;
    this.apiOf[slot] = this.names.id(r.api);
    this.accountOf[slot] = this.names.id(r.accountId);
    this.applicationOf[slot] = r.applicationId === null ? -1 : this.names.id(r.applicationId);
    this.environmentOf[slot] = this.names.id(r.environment);
  }

  /** Room for `length` bytes at the end of the arena: the last chunk, or a new one. */
  private allocate(length: number): [Buffer, number] {
    let last = this.chunks[this.chunks.length - 1];
    if (last === undefined || this.tail + length > last.length) {
      // A record larger than a chunk (huge metadata) gets a chunk of its own size.
      last = Buffer.allocUnsafeSlow(Math.max(this.chunkBytes, length));
      this.chunks.push(last);
      this.tail = 0;
    }
    const at = this.tail;
    this.tail += length;
    return [last, at];
  }

  /** Copies every live record into fresh chunks, in slot order, dropping the dead bytes. */
  private compact(): void {
    const old = this.chunks;
    this.chunks = [];
    this.tail = 0;
    for (let slot = 0; slot < this.count; slot++) {
      const from = old[this.chunkOf[slot]!]!;
      const at = this.offsetOf[slot]!;
      const length = this.lengthOf[slot]!;
      const [buf, to] = this.allocate(length);
      from.copy(buf, to, at, at + length);
      this.chunkOf[slot] = this.chunks.length - 1;
      this.offsetOf[slot] = to;
    }
    this.dead = 0;
  }

  /** Grows the columns to hold `slots` records and the indexes to stay at most half full. */
  private reserve(slots: number): void {
    if (slots > this.chunkOf.length) {
      const n = Math.max(slots, this.chunkOf.length * 2);
      this.chunkOf = grown(this.chunkOf, n);
      this.offsetOf = grown(this.offsetOf, n);
      this.lengthOf = grown(this.lengthOf, n);
      this.apiOf = grown(this.apiOf, n);
      this.accountOf = grown(this.accountOf, n);
      this.applicationOf = grown(this.applicationOf, n);
      this.environmentOf = grown(this.environmentOf, n);
      this.usageOf = grown(this.usageOf, n);
      this.lastUsedOf = grown(this.lastUsedOf, n);
    }
    if (slots * 2 > this.byId.length) {
      let capacity = this.byId.length;
      while (slots * 2 > capacity) capacity *= 2;
      this.byId = new Int32Array(capacity);
      this.byHash = new Int32Array(capacity);
      for (let slot = 0; slot < this.count; slot++) {
        this.place(this.byId, slot, ID);
        this.place(this.byHash, slot, HASH);
      }
    }
  }

  /** Where the id (ID) or hash (HASH) of `slot` lies: [buffer, start, length]. */
  private field(slot: number, which: Field): [Buffer, number, number] {
    const buf = this.chunks[this.chunkOf[slot]!]!;
    let at = this.offsetOf[slot]!;
    if (which === HASH) at += 4 + buf.readUInt32LE(at);
    return [buf, at + 4, buf.readUInt32LE(at)];
  }

  private place(table: Int32Array, slot: number, which: Field): void {
    const [buf, start, length] = this.field(slot, which);
    const mask = table.length - 1;
    let i = fnv1a(buf, start, length) & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = slot + 1;
  }

  private find(table: Int32Array, text: string, which: Field): number {
    if (text.length * 3 > this.scratch.length) this.scratch = Buffer.allocUnsafe(text.length * 3);
    const scratch = this.scratch;
    const length = scratch.write(text, 0, "utf8");
    const mask = table.length - 1;
    for (let i = fnv1a(scratch, 0, length) & mask; table[i] !== 0; i = (i + 1) & mask) {
      const slot = table[i]! - 1;
      const [buf, start, n] = this.field(slot, which);
      if (n === length && equalBytes(buf, start, scratch, length)) return slot;
    }
    return -1;
  }
}

/** The fields of a record kept in its JSON array, in this order. */
type Rest = [
  name: KeyRecord["name"], hashAlgorithm: KeyRecord["hashAlgorithm"], start: KeyRecord["start"], scopes: string[],
  ipAllowlist: string[], expiresAt: number | null, rateLimit: KeyRecord["rateLimit"], enabled: boolean, revokedAt: number | null,
  rotatedAt: number | null, graceEndsAt: number | null, replacedBy: string | null, metadata: Record<string, unknown>,
  source: KeyRecord["source"], createdAt: number, updatedAt: number,
];

const ID = 0;
const HASH = 1;
type Field = typeof ID | typeof HASH;

/** Strings held once, by number: the APIs, accounts, applications and environments of keys. */
class Interner {
  private readonly numbers = new Map<string, number>();
  private readonly strings: string[] = [];

  id(s: string): number {
    let n = this.numbers.get(s);
    if (n === undefined) {
      n = this.strings.length;
      this.numbers.set(s, n);
      this.strings.push(s);
    }
    return n;
  }

  /** The number of a string held, or -1. */
  find(s: string): number {
    return this.numbers.get(s) ?? -1;
  }

  name(n: number): string {
    return this.strings[n]!;
  }
}

/** A copy of `a` of `length` elements (more than it has), zero-filled after them. */
export function grown<T extends Uint32Array | Int32Array | Float64Array>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}

/** 32-bit FNV-1a of bytes: a few nanoseconds a byte, spread well enough for hex digests and ids. */
function fnv1a(buf: Buffer, start: number, length: number): number {
  let h = 0x811c9dc5;
  for (let i = start, end = start + length; i < end; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 0;
}

function equalBytes(a: Buffer, start: number, b: Buffer, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[start + i] !== b[i]) return false;
  return true;
}
