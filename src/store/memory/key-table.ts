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
 * an arena of chunks; an update writes new bytes and leaves the old ones dead. A chunk half
 * dead is evacuated: its live records are copied to the chunk being filled and it is freed,
 * so the arena stays within about twice the live bytes, and a pause is at most two scans of the
 * slot column and about a chunk copied — never the whole arena at once. A record
 * larger than half a chunk gets a chunk of its own. The fields list queries filter on are
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
  /** The arena; null where a chunk was freed (its index is reused, see `free`). */
  private chunks: Array<Buffer | null> = [];
  /** Per chunk: bytes of records an update replaced, and the unused end of a chunk left behind. */
  private deadOf: number[] = [];
  private free: number[] = [];
  /** The chunk small records are written to (-1 before the first), and the bytes used in it. */
  private active = -1;
  private tail = 0;
  /** Bytes of current records, and dead bytes, over all chunks. */
  private live = 0;
  private dead = 0;

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

  constructor(private readonly chunkBytes = 4 * 1024 * 1024) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1024) throw new RangeError(`chunkBytes must be a whole number ≥ 1024, not ${chunkBytes}`);
  }

  get size(): number {
    return this.count;
  }

  /**
   * The arena: chunks held (a record over half a chunk has one of its own, of its size), bytes
   * of current records, and dead bytes not yet reclaimed (replaced records, and the unused ends
   * of chunks left behind).
   */
  get memory(): { chunks: number; live: number; dead: number } {
    return { chunks: this.chunks.length - this.free.length, live: this.live, dead: this.dead };
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
   * Adds records whose ids and hashes are new (the caller checks): all of them or, when one
   * cannot be encoded (metadata that JSON cannot hold, such as a BigInt), none — every record
   * is encoded before anything is stored.
   */
  insert(records: readonly KeyRecord[]): void {
    const encoded = records.map(encode);
    this.reserve(this.count + records.length);
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      // Counted once written: an evacuation while writing it scans the slots before it only.
      const slot = this.count;
      this.write(slot, r, encoded[i]!);
      this.count++;
      this.place(this.byId, slot, ID);
      this.place(this.byHash, slot, HASH);
    }
  }

  /** Replaces the record in `slot` with `r`, which has the same id and hash; throws, changing nothing, if `r` cannot be encoded. */
  replace(slot: number, r: KeyRecord): void {
    const encoded = encode(r);
    const length = this.lengthOf[slot]!;
    const chunk = this.write(slot, r, encoded);
    this.live -= length;
    this.bury(chunk, length);
  }

  /** Adds uses to a key's count and moves its last use forward (never back). */
  addUsage(slot: number, count: number, lastUsedAt: number): void {
    this.usageOf[slot] = this.usageOf[slot]! + count;
    const last = this.lastUsedOf[slot]!;
    if (Number.isNaN(last) || lastUsedAt > last) this.lastUsedOf[slot] = lastUsedAt;
  }

  /** A fresh copy of the record in `slot`, the caller's to change. */
  get(slot: number): KeyRecord {
    const [buf, hashAt, hashLength] = this.field(slot, HASH);
    const rest = JSON.parse(buf.toString("utf8", hashAt + hashLength, this.offsetOf[slot]! + this.lengthOf[slot]!)) as Rest;
    const last = this.lastUsedOf[slot]!;
    const application = this.applicationOf[slot]!;
    return {
      id: this.text(slot, ID),
      api: this.names.name(this.apiOf[slot]!),
      accountId: this.names.name(this.accountOf[slot]!),
      applicationId: application < 0 ? null : this.names.name(application),
      name: rest[0], environment: this.names.name(this.environmentOf[slot]!),
      hash: buf.toString("utf8", hashAt, hashAt + hashLength),
      hashAlgorithm: rest[1], start: rest[2], scopes: rest[3], ipAllowlist: rest[4], expiresAt: rest[5], rateLimit: rest[6],
      enabled: rest[7], revokedAt: rest[8], rotatedAt: rest[9], graceEndsAt: rest[10], replacedBy: rest[11], metadata: rest[12],
      source: rest[13], createdAt: rest[14], updatedAt: rest[15],
      lastUsedAt: Number.isNaN(last) ? null : last, usageCount: this.usageOf[slot]!,
    };
  }

  /** The hash of the key in `slot`, as the change feed reports it. */
  hashOf(slot: number): string {
    return this.text(slot, HASH);
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
      const id = this.text(slot, ID);
      if (q.after === undefined || id > q.after) found.push({ id, slot });
    }
    found.sort((a, b) => (a.id < b.id ? -1 : 1));
    return found.slice(0, q.limit).map((x) => this.get(x.slot));
  }

  /**
   * Writes `r`, encoded by `encode`, into the arena and points `slot` at it. Returns the chunk
   * `slot` pointed to before: where its previous bytes, now dead, lie (an evacuation while
   * making room may have moved them).
   */
  private write(slot: number, r: KeyRecord, e: Encoded): number {
    const length = 8 + e.idLength + e.hashLength + e.jsonLength;
    const chunk = this.allocate(length);
    const previous = this.chunkOf[slot]!;
    const buf = this.chunks[chunk]!;
    const at = chunk === this.active ? this.tail - length : 0;
    buf.writeUInt32LE(e.idLength, at);
    buf.write(r.id, at + 4, "utf8");
    buf.writeUInt32LE(e.hashLength, at + 4 + e.idLength);
    buf.write(r.hash, at + 8 + e.idLength, "utf8");
    buf.write(e.json, at + 8 + e.idLength + e.hashLength, "utf8");
    this.chunkOf[slot] = chunk;
    this.offsetOf[slot] = at;
    this.lengthOf[slot] = length;
    this.live += length;
    this.apiOf[slot] = this.names.id(r.api);
    this.accountOf[slot] = this.names.id(r.accountId);
    this.applicationOf[slot] = r.applicationId === null ? -1 : this.names.id(r.applicationId);
    this.environmentOf[slot] = this.names.id(r.environment);
    this.usageOf[slot] = r.usageCount;
    this.lastUsedOf[slot] = r.lastUsedAt ?? Number.NaN;
    return previous;
  }

  /**
   * The chunk to write `length` bytes to: the active chunk (its bytes at `tail - length` once
   * this returns), a new active one when they do not fit, or a chunk of their own when they
   * are more than half a chunk.
   */
  private allocate(length: number): number {
    // More than half a chunk: the room that would be left unused at the end of the active
    // chunk is bounded, and an evacuation (at most half a chunk) plus this record always fit
    // in a fresh chunk, so the loop below ends.
    if (length * 2 > this.chunkBytes) return this.open(length);
    // A loop: burying the chunk left behind may evacuate it into the new one, which may then
    // have too little room left.
    while (this.active < 0 || this.tail + length > this.chunkBytes) {
      const left = this.active;
      const unused = this.chunkBytes - this.tail;
      this.active = this.open(this.chunkBytes);
      this.tail = 0;
      // The end of the chunk left behind is never written: dead from now on.
      if (left >= 0) this.bury(left, unused);
    }
    this.tail += length;
    return this.active;
  }

  private open(size: number): number {
    const index = this.free.pop() ?? this.chunks.length;
    this.chunks[index] = Buffer.allocUnsafeSlow(size);
    this.deadOf[index] = 0;
    return index;
  }

  /** Counts `length` bytes of `chunk` dead, and evacuates the chunk (unless it is being filled) once half of it is. */
  private bury(chunk: number, length: number): void {
    this.deadOf[chunk] = this.deadOf[chunk]! + length;
    this.dead += length;
    if (chunk !== this.active && this.deadOf[chunk]! * 2 >= this.chunks[chunk]!.length) this.evacuate(chunk);
  }

  /** Copies the live records of `chunk` (not the active one) to the active chunk and frees it. */
  private evacuate(chunk: number): void {
    const from = this.chunks[chunk]!;
    // A chunk not being filled is all live or dead bytes: the scan stops once the live ones
    // are moved, at once for a large record's own chunk (freed when the record is replaced).
    let left = from.length - this.deadOf[chunk]!;
    for (let slot = 0; left > 0 && slot < this.count; slot++) {
      if (this.chunkOf[slot] !== chunk) continue;
      const at = this.offsetOf[slot]!;
      const length = this.lengthOf[slot]!;
      left -= length;
      const to = this.allocate(length);
      const offset = to === this.active ? this.tail - length : 0;
      from.copy(this.chunks[to]!, offset, at, at + length);
      this.chunkOf[slot] = to;
      this.offsetOf[slot] = offset;
    }
    this.dead -= this.deadOf[chunk]!;
    this.deadOf[chunk] = 0;
    this.chunks[chunk] = null;
    this.free.push(chunk);
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

  /** The id (ID) or hash (HASH) of `slot`. */
  private text(slot: number, which: Field): string {
    const [buf, start, length] = this.field(slot, which);
    return buf.toString("utf8", start, start + length);
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
      if (n === length && buf.compare(scratch, 0, length, start, start + length) === 0) return slot;
    }
    return -1;
  }
}

/** A record's variable parts, encoded and measured before anything is written. */
interface Encoded {
  json: string;
  jsonLength: number;
  idLength: number;
  hashLength: number;
}

function encode(r: KeyRecord): Encoded {
  const rest: Rest = [
    r.name, r.hashAlgorithm, r.start, r.scopes, r.ipAllowlist, r.expiresAt, r.rateLimit, r.enabled, r.revokedAt,
    r.rotatedAt, r.graceEndsAt, r.replacedBy, r.metadata, r.source, r.createdAt, r.updatedAt,
  ];
  const json = JSON.stringify(rest);
  return { json, jsonLength: Buffer.byteLength(json), idLength: Buffer.byteLength(r.id), hashLength: Buffer.byteLength(r.hash) };
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
