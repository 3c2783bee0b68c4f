// The offloaded connections' state as a struct of typed arrays indexed by the connection's slot
// (src/slots.ts), and an open-addressing index from either direction's tuple to its slot. No
// JavaScript object per connection: tens of thousands of small objects and map entries were most
// of the daemon's memory, and the garbage of building them in a burst kept its heap large.
//
// The arrays are allocated once, for every slot there can be: large typed arrays are fresh
// zero pages, resident only once a slot is used. Growing them by doubling instead left about
// 4 MiB of freed arrays that the engine kept (measured at 64k connections).
import type { CtEntry } from "./conntrack.ts";
import type { Tuple } from "./nat.ts";

export type Dir = 0 | 1;

/** A tuple's bytes: source and destination address (16 each, IPv4 in the first four), ports. */
const TUPLE_BYTES = 36;
const NO_TCP_STATE = -1;
const FIRST_BUCKETS = 4096;

const USED = 1;
const ACTIVE_SINCE_REFRESH = 2;

export class ConnStore {
  private slots = 0;
  private count = 0;
  /** orig, then reply tuple of each slot (TUPLE_BYTES each). */
  private readonly tuples: Uint8Array;
  private readonly family: Uint8Array;
  private readonly proto: Uint8Array;
  /** Length of the addresses as conntrack gave them (4 or 16 for IPv4, 16 for IPv6). */
  private readonly addrLen: Uint8Array;
  private readonly state: Uint8Array;
  private readonly ctId: Uint32Array;
  private readonly zone: Uint16Array;
  private readonly ctMark: Uint32Array;
  private readonly ctStatus: Uint32Array;
  private readonly tcpState: Int8Array;
  private readonly ctTimeout: Uint32Array;
  /** Packets counted both ways at the last sweep (exact up to 2^53). */
  readonly packets: Float64Array;
  readonly offloadedAt: Float64Array;
  readonly lastActive: Float64Array;
  readonly lastRefresh: Float64Array;
  /** Per direction (slot * 2 + dir): interned ingress and next hop, -1 while not offloaded. */
  readonly ingress: Int32Array;
  readonly hop: Int32Array;
  /** Per direction: FLOW_ACT_* as installed. */
  readonly actFlags: Uint8Array;
  /** Open addressing, linear probing: slot * 2 + dir + 1, 0 for an empty bucket. */
  private buckets = new Int32Array(FIRST_BUCKETS);
  private indexed = 0;

  /** capacity: the number of slots (a whole number). */
  constructor(readonly capacity: number) {
    this.tuples = new Uint8Array(capacity * 2 * TUPLE_BYTES);
    this.family = new Uint8Array(capacity);
    this.proto = new Uint8Array(capacity);
    this.addrLen = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.ctId = new Uint32Array(capacity);
    this.zone = new Uint16Array(capacity);
    this.ctMark = new Uint32Array(capacity);
    this.ctStatus = new Uint32Array(capacity);
    this.tcpState = new Int8Array(capacity);
    this.ctTimeout = new Uint32Array(capacity);
    this.packets = new Float64Array(capacity);
    this.offloadedAt = new Float64Array(capacity);
    this.lastActive = new Float64Array(capacity);
    this.lastRefresh = new Float64Array(capacity);
    this.ingress = new Int32Array(capacity * 2);
    this.hop = new Int32Array(capacity * 2);
    this.actFlags = new Uint8Array(capacity * 2);
  }

  get size(): number {
    return this.count;
  }

  /** One past the highest slot ever used: iterate 0..end and skip what has(). */
  get end(): number {
    return this.slots;
  }

  has(slot: number): boolean {
    return slot < this.slots && (this.state[slot]! & USED) !== 0;
  }

  /** Takes a connection into `slot` and indexes its tuples (the slot must be free). */
  add(slot: number, e: CtEntry, now: number, lastRefresh: number, activeSinceRefresh: boolean): void {
    this.reserve(slot + 1);
    this.family[slot] = e.orig.family;
    this.proto[slot] = e.orig.proto;
    this.addrLen[slot] = Math.min(16, e.orig.src.length);
    this.writeTuple(slot * 2, e.orig);
    this.writeTuple(slot * 2 + 1, e.reply);
    this.setEntry(slot, e);
    this.state[slot] = USED | (activeSinceRefresh ? ACTIVE_SINCE_REFRESH : 0);
    this.packets[slot] = 0;
    this.offloadedAt[slot] = now;
    this.lastActive[slot] = now;
    this.lastRefresh[slot] = lastRefresh;
    for (const d of [0, 1]) {
      this.ingress[slot * 2 + d] = -1;
      this.hop[slot * 2 + d] = -1;
      this.actFlags[slot * 2 + d] = 0;
    }
    this.count++;
    this.insert(slot * 2);
    this.insert(slot * 2 + 1);
  }

  /** Drops the connection in `slot` (its directions must be cleared by the caller). */
  remove(slot: number): void {
    if (!this.has(slot)) return;
    this.unindex(slot * 2);
    this.unindex(slot * 2 + 1);
    this.state[slot] = 0;
    this.count--;
  }

  /** The entry's mutable fields (its tuples never change). */
  setEntry(slot: number, e: CtEntry): void {
    this.ctId[slot] = e.id;
    this.zone[slot] = e.zone;
    this.ctMark[slot] = e.mark;
    this.ctStatus[slot] = e.status;
    this.tcpState[slot] = e.tcpState ?? NO_TCP_STATE;
    this.ctTimeout[slot] = e.timeout;
  }

  /** The conntrack entry as the connection holds it (a new object: for the slow paths). */
  entry(slot: number): CtEntry {
    const tcp = this.tcpState[slot]!;
    return {
      id: this.ctId[slot]!, orig: this.tuple(slot, 0), reply: this.tuple(slot, 1), zone: this.zone[slot]!,
      mark: this.ctMark[slot]!, status: this.ctStatus[slot]!, tcpState: tcp === NO_TCP_STATE ? null : tcp,
      helper: null, timeout: this.ctTimeout[slot]!,
    };
  }

  /** A direction's tuple (a new object). */
  tuple(slot: number, d: Dir): Tuple {
    const family = this.family[slot] as 2 | 10;
    const len = this.addrLen[slot]!;
    const o = (slot * 2 + d) * TUPLE_BYTES;
    const b = this.tuples;
    return {
      family, proto: this.proto[slot]!, src: b.slice(o, o + len), dst: b.slice(o + 16, o + 16 + len),
      sport: (b[o + 32]! << 8) | b[o + 33]!, dport: (b[o + 34]! << 8) | b[o + 35]!,
    };
  }

  protoOf(slot: number): number {
    return this.proto[slot]!;
  }

  zoneOf(slot: number): number {
    return this.zone[slot]!;
  }

  markOf(slot: number): number {
    return this.ctMark[slot]!;
  }

  statusOf(slot: number): number {
    return this.ctStatus[slot]!;
  }

  setStatus(slot: number, status: number): void {
    this.ctStatus[slot] = status;
  }

  tcpStateOf(slot: number): number | null {
    const s = this.tcpState[slot]!;
    return s === NO_TCP_STATE ? null : s;
  }

  activeSinceRefresh(slot: number): boolean {
    return (this.state[slot]! & ACTIVE_SINCE_REFRESH) !== 0;
  }

  setActiveSinceRefresh(slot: number, on: boolean): void {
    this.state[slot] = on ? this.state[slot]! | ACTIVE_SINCE_REFRESH : this.state[slot]! & ~ACTIVE_SINCE_REFRESH;
  }

  /** The slot and direction whose tuple equals t, as slot * 2 + dir, or -1. */
  find(t: Tuple): number {
    const mask = this.buckets.length - 1;
    for (let i = hashTuple(t) & mask; ; i = (i + 1) & mask) {
      const v = this.buckets[i]!;
      if (v === 0) return -1;
      if (this.equals(v - 1, t)) return v - 1;
    }
  }

  private equals(sd: number, t: Tuple): boolean {
    const slot = sd >> 1;
    if (this.family[slot] !== t.family || this.proto[slot] !== t.proto) return false;
    const b = this.tuples;
    const o = sd * TUPLE_BYTES;
    if (((b[o + 32]! << 8) | b[o + 33]!) !== t.sport || ((b[o + 34]! << 8) | b[o + 35]!) !== t.dport) return false;
    const len = t.family === 2 ? 4 : 16;
    for (let i = 0; i < len; i++) if (b[o + i] !== t.src[i] || b[o + 16 + i] !== t.dst[i]) return false;
    return true;
  }

  private writeTuple(sd: number, t: Tuple): void {
    const o = sd * TUPLE_BYTES;
    const b = this.tuples;
    b.fill(0, o, o + TUPLE_BYTES);
    const len = t.family === 2 ? 4 : 16;
    b.set(t.src.subarray(0, len), o);
    b.set(t.dst.subarray(0, len), o + 16);
    b[o + 32] = t.sport >> 8;
    b[o + 33] = t.sport & 0xff;
    b[o + 34] = t.dport >> 8;
    b[o + 35] = t.dport & 0xff;
  }

  private storedHash(sd: number): number {
    const slot = sd >> 1;
    const b = this.tuples;
    const o = sd * TUPLE_BYTES;
    const len = this.family[slot] === 2 ? 4 : 16;
    return hashParts(this.family[slot]!, this.proto[slot]!, (b[o + 32]! << 8) | b[o + 33]!, (b[o + 34]! << 8) | b[o + 35]!,
      b, o, b, o + 16, len);
  }

  private insert(sd: number): void {
    if ((this.indexed + 1) * 2 > this.buckets.length) this.rehash(this.buckets.length * 2);
    const mask = this.buckets.length - 1;
    let i = this.storedHash(sd) & mask;
    while (this.buckets[i] !== 0) i = (i + 1) & mask;
    this.buckets[i] = sd + 1;
    this.indexed++;
  }

  /** Removes sd from the index, moving later entries of its probe run back (no tombstones). */
  private unindex(sd: number): void {
    const mask = this.buckets.length - 1;
    let i = this.storedHash(sd) & mask;
    while (this.buckets[i] !== sd + 1) {
      if (this.buckets[i] === 0) return;
      i = (i + 1) & mask;
    }
    this.indexed--;
    for (let j = (i + 1) & mask; this.buckets[j] !== 0; j = (j + 1) & mask) {
      const home = this.storedHash(this.buckets[j]! - 1) & mask;
      // The entry at j may move to the hole at i unless its home lies cyclically in (i, j].
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (stays) continue;
      this.buckets[i] = this.buckets[j]!;
      i = j;
    }
    this.buckets[i] = 0;
  }

  private rehash(size: number): void {
    const old = this.buckets;
    this.buckets = new Int32Array(size);
    this.indexed = 0;
    for (const v of old) if (v !== 0) this.insert(v - 1);
  }

  private reserve(n: number): void {
    if (n > this.capacity) throw new RangeError(`slot ${n - 1} is beyond the store's ${this.capacity} slots`);
    if (n > this.slots) this.slots = n;
  }
}

function hashTuple(t: Tuple): number {
  return hashParts(t.family, t.proto, t.sport, t.dport, t.src, 0, t.dst, 0, t.family === 2 ? 4 : 16);
}

/** FNV-1a over the tuple's fields, then a final mix (the low bits pick the bucket). */
function hashParts(family: number, proto: number, sport: number, dport: number,
  src: Uint8Array, so: number, dst: Uint8Array, dO: number, len: number): number {
  let h = Math.imul(0x811c9dc5 ^ family ^ (proto << 8), 0x01000193);
  h = Math.imul(h ^ sport, 0x01000193);
  h = Math.imul(h ^ dport, 0x01000193);
  for (let i = 0; i < len; i++) h = Math.imul(h ^ src[so + i]!, 0x01000193);
  for (let i = 0; i < len; i++) h = Math.imul(h ^ dst[dO + i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}
