// The latest conntrack event's entry of connections that are neither offloaded nor waiting for
// their entry, for a while. In a burst the daemon often reads a connection's event before the
// datapath's report of its packet (of the reply direction, say); the report then finds the
// entry here instead of asking ctnetlink. A ring of entries held in typed arrays
// (src/connstore.ts), the oldest replaced first, found by either direction's tuple: a burst
// leaves no objects behind.
import type { CtEntry } from "./conntrack.ts";
import { ConnStore, type Dir } from "./connstore.ts";
import type { Tuple } from "./nat.ts";

export class RecentEntries {
  /** Allocated by the first put after a clear: a new store is fresh zero pages, not resident. */
  private store: ConnStore | null = null;
  private readonly capacity: number;
  private next = 0;
  private lastPut = -Infinity;

  /** capacity: how many entries at most (a whole number: slots index typed arrays). */
  constructor(capacity: number, private readonly maxAgeMs: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  get size(): number {
    return this.store?.size ?? 0;
  }

  /** Keeps e, in place of what was kept for its connection (and of the oldest when full). */
  put(e: CtEntry, now: number): void {
    this.delete(e.orig);
    // The store has no room for a helper's name: such an entry is looked up (it is not offloaded).
    if (e.helper !== null) return;
    this.lastPut = now;
    const slot = this.next;
    this.next = (slot + 1) % this.capacity;
    this.store ??= new ConnStore(this.capacity);
    this.store.remove(slot);
    this.store.add(slot, e, now, now, false);
  }

  /** The entry one of whose tuples is t, and t's direction, if kept within maxAgeMs; it is let go. */
  take(t: Tuple, now: number): { entry: CtEntry; dir: Dir } | null {
    if (!this.store) return null;
    const found = this.store.find(t);
    if (found < 0) return null;
    const slot = found >> 1;
    const entry = now - this.store.offloadedAt[slot]! <= this.maxAgeMs ? this.store.entry(slot) : null;
    this.store.remove(slot);
    return entry && { entry, dir: (found & 1) as Dir };
  }

  /** Forgets the connection one of whose tuples is t. */
  delete(t: Tuple): void {
    const found = this.store?.find(t) ?? -1;
    if (found >= 0) this.store?.remove(found >> 1);
  }

  /**
   * Once every entry is too old to be used, hands the memory back: after a burst every slot of
   * the store is resident (a few MiB at a large --max-flows), and would stay so.
   */
  releaseIfStale(now: number): void {
    if (this.store && now - this.lastPut > this.maxAgeMs) this.clear();
  }

  clear(): void {
    this.store = null;
    this.next = 0;
  }
}
