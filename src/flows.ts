// The flow table: which connections are offloaded, in which directions, and when they go back to
// the kernel. It turns datapath events (new flow, FIN/RST) and conntrack events into flow map
// updates, and sweeps the per-connection counters once a second to keep conntrack entries alive
// and to hand idle connections back.
import {
  DSA_TAGGERS,
  FLOW_ACT_TC_ONLY,
  IPPROTO_UDP,
  FLOW_STATS_CLOSING,
  LAYOUT,
  decodeAction,
  decodeKey,
  decodeStats,
  encodeActionInto,
  statsFlags,
  statsPackets,
  encodeKeyInto,
  type FlowAction,
  type FlowKey,
  type FlowStats,
} from "./abi.ts";
import { IPS_ASSURED } from "../ffi/conntrack.ts";
import { ifNameToIndex } from "../ffi/libc.ts";
import { formatEndpoint, protoName } from "./addr.ts";
import { describeEncap, encapActionFields, encapKeyFields, keyEncap, sameEncap } from "./encap.ts";
import type { BpfMap } from "./bpf.ts";
import { type Conntrack, type CtEntry, defaultTimeout, offloadable } from "./conntrack.ts";
import type { Logger } from "./log.ts";
import { type DirectionPlan, type Tuple, planDirection } from "./nat.ts";
import type { NextHop, Rtnl } from "./nexthop.ts";
import type { RouteEvent } from "./rtevents.ts";
import { ConnStore, type Dir } from "./connstore.ts";
import { RecentEntries } from "./recent.ts";
import { type Ingress, Interned, equalIngress, equalNextHop, hopKey, ingressKey } from "./shared.ts";
import { SlotAllocator } from "./slots.ts";

export interface FlowTableOptions {
  flows: BpfMap;
  stats: BpfMap;
  ct: Conntrack;
  rtnl: Rtnl;
  log: Logger;
  /** Devices the datapath is attached to: only flows between them are offloaded. */
  devices: ReadonlyMap<number, string>;
  maxFlows: number;
  /** How many new-flow reports the datapath's ring holds: recent events are kept for as many. */
  reportBacklog: number;
  tcpTimeoutMs: number;
  udpTimeoutMs: number;
}

/**
 * A flow the datapath reported and the daemon has not offloaded: its conntrack entry not looked
 * at yet (tuple set), not there yet, or not offloadable yet (e.g. TCP handshake).
 */
interface Pending {
  ingress: Ingress;
  since: number;
  /** Reported by the datapath since the last look at conntrack: settleNewFlows() asks for its entry. */
  tuple?: Tuple;
}

/** Neighbour states the kernel transmits to (linux/neighbour.h): REACHABLE STALE DELAY PROBE PERMANENT. */
const USABLE_NUD = 0x02 | 0x04 | 0x08 | 0x10 | 0x80;

/** How long a pending flow waits for its conntrack entry to become offloadable. */
const PENDING_MS = 30_000;
/**
 * A live connection's conntrack timeout is pushed forward three times per timeout, so the entry
 * never expires under a live flow; at most REFRESH_BUDGET of them per sweep (the rest wait a
 * second: the margin is two thirds of a timeout). Each refresh echoes back as an UPDATE event.
 */
const REFRESH_BUDGET = 2000;
/** How long a UDP flow carries traffic both ways before the kernel would call it a stream. */
const UDP_STREAM_MS = 2_000;
/** From this many connections on, the sweep reads the stats array in batches of SWEEP_BATCH slots. */
const BATCH_READ_FROM = 256;
const SWEEP_BATCH = 4096;
/** A UDP entry with at most this many seconds less than its full timeout left counts as fresh. */
const FRESH_TIMEOUT_S = 2;
/** Reported flows waiting for settleNewFlows() at most (memory stays bounded in a flood). */
const MAX_UNSETTLED = 16384;
/**
 * How long a reported flow waits for its conntrack event before settleNewFlows() looks its entry
 * up. The datapath reports a packet before the kernel's conntrack sees it, so a new entry's event
 * (which carries the entry) often comes a wake-up after the report, microseconds to a millisecond
 * later: looking up at once cost a ctnetlink round trip for nearly every new connection.
 */
export const SETTLE_MS = 5;
/** For how long a recent conntrack event stands in for a lookup (see `recent`). */
const RECENT_MS = 1000;
/** After lost events, the table is dumped when offloaded connections are at least 1/DUMP_SHARE of it. */
const DUMP_SHARE = 4;
/** Slots of removed connections rest this long before reuse (see SlotAllocator). */
const SLOT_REST_MS = 2_000;

/** A short string that identifies a tuple (a map key, not for display): 16-bit character codes. */
export function tupleId(t: Tuple): string {
  const head = String.fromCharCode(t.family, t.proto, t.sport, t.dport);
  const s = t.src;
  const d = t.dst;
  if (t.family === 2) return head + String.fromCharCode((s[0]! << 8) | s[1]!, (s[2]! << 8) | s[3]!, (d[0]! << 8) | d[1]!, (d[2]! << 8) | d[3]!);
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((s[i]! << 8) | s[i + 1]!, (d[i]! << 8) | d[i + 1]!);
  return head + String.fromCharCode(...words);
}

export function keyTuple(k: FlowKey): Tuple {
  return { family: k.family as 2 | 10, proto: k.proto, src: k.saddr, dst: k.daddr, sport: k.sport, dport: k.dport };
}

export function describeTuple(t: Tuple): string {
  return `${protoName(t.proto)} ${formatEndpoint(t.family, t.src, t.sport)} -> ${formatEndpoint(t.family, t.dst, t.dport)}`;
}

export class FlowTable {
  /** The offloaded connections, by slot (the connection id in the datapath), and their tuples. */
  private readonly store: ConnStore;
  /** One copy of the ingresses and next hops many connections have in common. */
  private readonly ingresses = new Interned<Ingress>(ingressKey, equalIngress);
  private readonly hops = new Interned<NextHop>(hopKey, equalNextHop);
  private readonly pending = new Map<string, Pending>();
  /** Ids of pending flows reported since the last settleNewFlows(), in order, and when. */
  private fresh: string[] = [];
  private freshAt: number[] = [];
  /** At this length `fresh` drops the ids events have settled (amortised: survivors at most half). */
  private compactAt = MAX_UNSETTLED / 2;
  /**
   * The latest event's entry of connections not offloaded nor pending: in a burst, a
   * connection's event often comes before the datapath's report, which then needs no ctnetlink
   * lookup. Bounded (oldest out first), and used only while young.
   */
  private readonly recent: RecentEntries;
  /** Egress devices whose flows the XDP program must leave to the TC program (see egress.ts). */
  private tcOnly: ReadonlySet<number> = new Set();
  /** Slots of connections whose next hops must be resolved again (a route, neighbour or link changed). */
  private readonly stale = new Set<number>();
  private readonly slots: SlotAllocator;
  /** What defaultTimeout() reads of a connection's entry, filled in per connection by the sweep. */
  private readonly timeoutProbe: CtEntry = {
    id: 0, orig: { family: 2, proto: 0, src: new Uint8Array(4), dst: new Uint8Array(4), sport: 0, dport: 0 },
    reply: { family: 2, proto: 0, src: new Uint8Array(4), dst: new Uint8Array(4), sport: 0, dport: 0 },
    zone: 0, mark: 0, status: 0, tcpState: null, helper: null, timeout: 0,
  };
  private readonly statsBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_stats.size));
  private readonly statsView = new DataView(this.statsBuf.buffer);
  private readonly batch = { keys: new Uint8Array(SWEEP_BATCH * 4), values: new Uint8Array(SWEEP_BATCH * LAYOUT.flow_stats.size) };
  private readonly batchView = new DataView(this.batch.values.buffer);
  private readonly zeroStats = new Uint8Array(new ArrayBuffer(LAYOUT.flow_stats.size));
  private readonly idBuf = new Uint8Array(new ArrayBuffer(4));
  private fullWarned = false;
  private offloadCount = 0;

  constructor(private readonly o: FlowTableOptions) {
    this.slots = new SlotAllocator(o.maxFlows, SLOT_REST_MS);
    this.store = new ConnStore(o.maxFlows);
    // In a flood as many events as the ring holds reports may wait for theirs. Fewer, and the
    // reports need lookups, which slow the daemon down further.
    this.recent = new RecentEntries(Math.max(1024, o.reportBacklog), RECENT_MS);
  }

  /** Connections handed back to the kernel, by reason (for `status`). */
  readonly handedBack: Record<string, number> = {};

  get size(): number {
    return this.store.size;
  }

  /** Connections offloaded since the start (an idle table does not change it). */
  get offloads(): number {
    return this.offloadCount;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * The datapath saw a packet of a flow that is not in the flow map. A new connection waits for
   * settleNewFlows(): the conntrack event of its entry usually arrives in the same wake-up and
   * carries the entry, which saves a ctnetlink round trip per connection.
   */
  onNewFlow(key: FlowKey): void {
    const t = keyTuple(key);
    const ingress: Ingress = { ifindex: key.ifindex, encap: keyEncap(key) };
    const found = this.store.find(t);
    if (found >= 0) {
      // A direction arrived on another device than we guessed, or was not resolvable before.
      this.reinstallIfMoved(found >> 1, (found & 1) as Dir, ingress);
      return;
    }
    const id = tupleId(t);
    const p = this.pending.get(id);
    const now = performance.now();
    if (p === undefined) {
      // Its conntrack event was read first (the packet came after the ring was read), or this
      // is the reply direction, or the entry came from a resync's dump.
      const r = this.recent.take(t, now);
      if (r !== null) return this.tryOffload(r.entry, r.dir, ingress, id);
    }
    if (p?.tuple === undefined) {
      // A flood: the datapath reports the flow again later (it stays on the kernel path meanwhile).
      if (this.fresh.length >= this.compactAt) this.compactAt = Math.max(MAX_UNSETTLED / 2, 2 * this.compactFresh());
      if (this.fresh.length >= MAX_UNSETTLED) return;
      this.fresh.push(id);
      this.freshAt.push(now);
    }
    this.pending.set(id, { ingress, since: p?.since ?? now, tuple: t });
  }

  /** Drops the ids that events have settled from the reported flows; returns how many are left. */
  private compactFresh(): number {
    let n = 0;
    for (let i = 0; i < this.fresh.length; i++) {
      const id = this.fresh[i]!;
      if (this.pending.get(id)?.tuple === undefined) continue;
      this.fresh[n] = id;
      this.freshAt[n++] = this.freshAt[i]!;
    }
    this.fresh.length = this.freshAt.length = n;
    return n;
  }

  private reinstallIfMoved(slot: number, d: Dir, ingress: Ingress): void {
    const have = this.ingressOf(slot, d);
    if (!(have && sameIngress(have, ingress))) this.installDirection(slot, d, ingress);
  }

  /**
   * After the conntrack events of a wake-up are handled: looks up the entries of the flows
   * reported at least SETTLE_MS ago that no event has settled (an entry whose event came in an
   * earlier wake-up, or one that did not change), up to `budget` of them. Returns null when no
   * reported flow waits, else in how many ms to call again (0: the budget ran out; a flood must
   * not hold up the timers and other events).
   */
  settleNewFlows(now = performance.now(), budget = 1000): number | null {
    let done = 0;
    let wait: number | null = null;
    for (; done < this.fresh.length; done++) {
      const due = this.freshAt[done]! + SETTLE_MS - now;
      if (due > 0 || budget === 0) {
        wait = budget === 0 ? 0 : due;
        break;
      }
      const id = this.fresh[done]!;
      const p = this.pending.get(id);
      const t = p?.tuple;
      if (p === undefined || t === undefined) continue;
      budget--;
      p.tuple = undefined;
      const entry = this.recent.take(t, now)?.entry ?? this.o.ct.get(t);
      if (!entry) continue;
      const d = this.dirOf(entry, id);
      if (d === null) this.pending.delete(id);
      else this.tryOffload(entry, d, p.ingress, id);
    }
    this.fresh.splice(0, done);
    this.freshAt.splice(0, done);
    return wait;
  }

  /** A conntrack NEW or UPDATE event. */
  onConntrackChange(entry: CtEntry): void {
    const found = this.store.find(entry.orig);
    if (found >= 0) {
      const slot = found >> 1;
      // Events queue up while the daemon works: one from before the offload (the handshake's
      // SYN_SENT, say) can arrive after it. Judge by the entry as conntrack holds it now.
      if (this.stillOffloadable(slot, entry)) return;
      const now = this.o.ct.get(entry.orig);
      if (now && this.stillOffloadable(slot, now)) return;
      const check = now ? offloadable(now) : { ok: false as const, reason: "entry gone" };
      this.teardown(slot, check.ok ? "conntrack mark changed" : `conntrack: ${check.reason}`);
      return;
    }
    this.onEntryNotOffloaded(entry);
  }

  /** The entry of a connection not offloaded: its waiting directions try it, or it is kept. */
  private onEntryNotOffloaded(entry: CtEntry): void {
    const origId = tupleId(entry.orig);
    let waiting = false;
    for (const d of [0, 1] as const) {
      const id = d === 0 ? origId : tupleId(entry.reply);
      const p = this.pending.get(id);
      if (!p) continue;
      waiting = true;
      this.tryOffload(entry, d, p.ingress, id);
    }
    if (waiting) this.recent.delete(entry.orig);
    else this.recent.put(entry, performance.now());
  }

  private stillOffloadable(slot: number, entry: CtEntry): boolean {
    if (!offloadable(entry).ok || entry.mark !== this.store.markOf(slot)) return false;
    // An entry's tuples never change: only the rest is taken over.
    this.store.setEntry(slot, entry);
    return true;
  }

  /** A conntrack DESTROY event. */
  onConntrackDestroy(entry: CtEntry): void {
    const origId = tupleId(entry.orig);
    this.recent.delete(entry.orig);
    const found = this.store.find(entry.orig);
    if (found >= 0) this.teardown(found >> 1, "conntrack entry destroyed");
    this.pending.delete(origId);
    this.pending.delete(tupleId(entry.reply));
  }

  /** The datapath saw FIN or RST on an offloaded connection. */
  onClosing(connId: number): void {
    if (this.store.has(connId)) this.teardown(connId, "FIN/RST");
  }

  private dirOf(entry: CtEntry, id: string): Dir | null {
    if (tupleId(entry.orig) === id) return 0;
    if (tupleId(entry.reply) === id) return 1;
    return null;
  }

  private tryOffload(entry: CtEntry, d: Dir, ingress: Ingress, id: string): void {
    const check = offloadable(entry);
    if (!check.ok) {
      if (!this.pending.has(id)) this.o.log.debug(() => `not offloaded yet: ${describeTuple(d === 0 ? entry.orig : entry.reply)}: ${check.reason}`);
      this.pending.set(id, { ingress, since: this.pending.get(id)?.since ?? performance.now() });
      return;
    }
    this.pending.delete(id);
    // The connection got offloaded meanwhile (by its other direction): this one joins it.
    const found = this.store.find(d === 0 ? entry.orig : entry.reply);
    if (found >= 0) return this.reinstallIfMoved(found >> 1, (found & 1) as Dir, ingress);
    const plans = [planDirection(entry.orig, entry.reply, 0), planDirection(entry.orig, entry.reply, 1)] as const;
    const hop = this.resolve(plans[d], ingress, entry.mark);
    if (typeof hop === "string") return this.o.log.debug(() => `not offloaded: ${describeTuple(plans[d].match)}: ${hop}`);
    const slot = this.slots.alloc();
    if (slot === null) return this.warnFull();
    this.o.stats.update(this.u32(slot), this.zeroStats);
    const now = performance.now();
    const timeoutS = defaultTimeout(entry);
    // A UDP entry has no window to relax, and one whose timeout its last packet has just set
    // needs no fresher one: no update (nor its echo event) for it.
    const fresh = entry.orig.proto === IPPROTO_UDP && entry.timeout >= timeoutS - FRESH_TIMEOUT_S;
    // Before the first packet takes the fast path: relax TCP window tracking as the kernel
    // flowtable does, so packets that return to the kernel path later are not judged INVALID.
    if (!fresh) this.o.ct.setOffloaded(entry, timeoutS);
    this.store.add(slot, entry, now, fresh ? now - (timeoutS - entry.timeout) * 1000 : now, false);
    this.offloadCount++;
    // Its events now go to the connection; an older one must not stand in for conntrack later.
    this.recent.delete(entry.orig);
    if (!this.install(slot, d, ingress, hop, "offloaded", plans[d])) {
      this.teardown(slot, "flow map full");
      return this.warnFull();
    }
    // The other direction most likely arrives on the device this one leaves by; if not, its
    // first packet reports the real device and onNewFlow fixes it up.
    const other: Dir = d === 0 ? 1 : 0;
    const otherId = tupleId(plans[other].match);
    const otherPending = this.pending.get(otherId);
    this.pending.delete(otherId);
    this.installDirection(slot, other, otherPending?.ingress ?? { ifindex: hop.oif, encap: hop.encap }, plans[other]);
  }

  private installDirection(slot: number, d: Dir, ingress: Ingress, plan = this.planOf(slot, d)): void {
    const hop = this.resolve(plan, ingress, this.store.markOf(slot));
    if (typeof hop === "string") this.o.log.debug(() => `not offloaded: ${describeTuple(plan.match)}: ${hop}`);
    else if (!this.install(slot, d, ingress, hop, "offloaded", plan)) this.warnFull();
  }
  /**
   * Resolves a direction's next hop as the kernel would route it, or says why it can't be offloaded.
   * The datapath cannot see the packet mark that policy routing uses; the conntrack mark stands in
   * for it (setups like mwan3 restore it into the packet mark; it is 0 where nothing uses marks).
   */
  private resolve(plan: DirectionPlan, ingress: Ingress, mark: number): NextHop | string {
    if (!this.o.devices.has(ingress.ifindex)) return `ingress ifindex ${ingress.ifindex} is not an offloaded device`;
    // The route lookup sees the packet where the kernel would: on the bridge, VLAN or PPP device.
    const iif = this.o.rtnl.ingressDevice(ingress.ifindex, ingress.encap);
    if (iif === null) return `no routed device receives these packets on ${this.deviceName(ingress.ifindex)}${describeEncap(ingress.encap)}`;
    const m = plan.match;
    // The kernel routes in prerouting, after destination NAT and before source NAT.
    const r = this.o.rtnl.resolve({
      family: m.family, iif, src: m.src, dst: plan.daddr, proto: m.proto,
      sport: m.sport, dport: plan.dport, mark,
    });
    if (!r.ok) return r.reason;
    if (!this.o.devices.has(r.hop.oif)) return `egress ifindex ${r.hop.oif} is not an offloaded device`;
    if (r.hop.encap.dsaPort !== null && !this.dsaTagger(r.hop.oif)) return `unknown DSA tagger on ${this.deviceName(r.hop.oif)}`;
    return r.hop;
  }

  /**
   * The MACs a frame of this flow carries when the kernel would take it: sent to the receiving
   * device (a frame for another host is not routed, PACKET_OTHERHOST), and over PPPoE sent by
   * the session's peer (pppoe_rcv matches the session by id and peer). Zero: no check.
   */
  private ingressMacs(ingress: Ingress): { ingressDmac: Uint8Array; ingressSmac: Uint8Array } {
    const none = new Uint8Array(6);
    const l3 = this.o.rtnl.ingressDevice(ingress.ifindex, ingress.encap);
    const l3link = l3 === null ? null : this.o.rtnl.link(l3);
    if (!l3link) return { ingressDmac: none, ingressSmac: none };
    if (ingress.encap.pppoeSid !== null) {
      const s = this.o.rtnl.topology.pppoeSession(l3link);
      if (typeof s === "string") return { ingressDmac: none, ingressSmac: none };
      const dev = this.o.rtnl.link(ifNameToIndex(s.device));
      return { ingressDmac: dev?.mac.length === 6 ? dev.mac : none, ingressSmac: s.peer };
    }
    return { ingressDmac: l3link.mac.length === 6 ? l3link.mac : none, ingressSmac: none };
  }

  /**
   * The largest L3 packet the fast path may send: the L3 device's MTU, and what fits on the
   * lowest device once every header the TC program writes into the frame is counted (a device
   * takes MTU + one tag). Like the kernel, TC carries a QinQ outer tag as skb metadata (not
   * behind a DSA tag); XDP writes it into the frame and allows 4 bytes less (bpf/l2.h).
   */
  private frameMtu(hop: NextHop): number {
    const { vlans, pppoeSid, dsaPort } = hop.encap;
    const tagsInFrame = vlans.length === 2 && dsaPort === null ? 1 : vlans.length;
    const inFrame = 4 * tagsInFrame + (pppoeSid === null ? 0 : 8);
    const lowest = inFrame > 4 ? this.o.rtnl.link(hop.oif)?.mtu : undefined;
    return lowest === undefined ? hop.mtu : Math.min(hop.mtu, lowest + 4 - inFrame);
  }

  private dsaTagger(conduit: number): number {
    return DSA_TAGGERS[this.o.rtnl.dsaTagger(conduit) ?? ""] ?? 0;
  }

  private install(slot: number, d: Dir, ingress: Ingress, hop: NextHop, what = "offloaded", plan = this.planOf(slot, d)): boolean {
    const m = plan.match;
    const key = keyFor(plan, ingress);
    const flags = this.flagsFor(hop);
    const action = actionBuf;
    encodeActionInto({
      outIfindex: hop.oif, connId: slot, dir: d, flags, mtu: this.frameMtu(hop), dmac: hop.dmac, smac: hop.smac,
      saddr: plan.saddr, daddr: plan.daddr, sport: plan.sport, dport: plan.dport,
      l3CsumDelta: plan.l3CsumDelta, l4CsumPseudo: plan.l4CsumPseudo, l4CsumPorts: plan.l4CsumPorts,
      ...encapActionFields(hop.encap, hop.encap.dsaPort === null ? 0 : this.dsaTagger(hop.oif)),
      ...this.ingressMacs(ingress),
    }, action);
    const old = this.ingressOf(slot, d);
    try {
      this.o.flows.update(key, action);
    } catch (e) {
      this.o.log.debug(`flow map update failed: ${(e as Error).message}`);
      return false;
    }
    if (old && !sameIngress(old, ingress)) this.o.flows.delete(keyFor(plan, old));
    this.setDirection(slot, d, ingress, hop, flags);
    this.o.log.debug(() => {
      const from = `${this.deviceName(ingress.ifindex)}${describeEncap(ingress.encap)}`;
      return `${what} ${describeTuple(m)}${natNote(plan)} ${from} -> ${this.deviceName(hop.oif)}${describeEncap(hop.encap)}`;
    });
    return true;
  }

  /** Records an offloaded direction (its values interned: equal ones are held once). */
  private setDirection(slot: number, d: Dir, ingress: Ingress, hop: NextHop, flags: number): void {
    const i = slot * 2 + d;
    const ingressIndex = this.ingresses.acquire(ingress);
    const hopIndex = this.hops.acquire(hop);
    this.clearDirection(slot, d);
    this.store.ingress[i] = ingressIndex;
    this.store.hop[i] = hopIndex;
    this.store.actFlags[i] = flags;
  }

  private clearDirection(slot: number, d: Dir): void {
    const i = slot * 2 + d;
    if (this.store.ingress[i]! < 0) return;
    this.ingresses.release(this.store.ingress[i]!);
    this.hops.release(this.store.hop[i]!);
    this.store.ingress[i] = -1;
    this.store.hop[i] = -1;
  }

  /** A direction's ingress, null while it is not offloaded. */
  private ingressOf(slot: number, d: Dir): Ingress | null {
    const i = this.store.ingress[slot * 2 + d]!;
    return i < 0 ? null : this.ingresses.get(i);
  }

  /** A direction's next hop (offloaded directions only). */
  private hopOf(slot: number, d: Dir): NextHop {
    return this.hops.get(this.store.hop[slot * 2 + d]!);
  }

  /** What a direction's packets look like and become (derived: an entry's tuples never change). */
  private planOf(slot: number, d: Dir): DirectionPlan {
    return planDirection(this.store.tuple(slot, 0), this.store.tuple(slot, 1), d);
  }

  /** Removes a connection from the fast path; its next packets take the kernel path. */
  private teardown(slot: number, reason: string): void {
    for (const d of [0, 1] as const) {
      const ingress = this.ingressOf(slot, d);
      if (ingress) this.o.flows.delete(keyFor(this.planOf(slot, d), ingress));
      this.clearDirection(slot, d);
    }
    this.o.log.debug(() => {
      const stats = this.readStats(slot);
      const counts = stats ? ` after ${stats.dir[0].packets}+${stats.dir[1].packets} packets` : "";
      return `handed back ${describeTuple(this.store.tuple(slot, 0))}${counts}: ${reason}`;
    });
    this.stale.delete(slot);
    this.store.remove(slot);
    this.slots.release(slot);
    const kind = reason.split(":")[0]!;
    this.handedBack[kind] = (this.handedBack[kind] ?? 0) + 1;
  }

  /** The slots of the offloaded connections, lowest first (a copy: the caller may tear down). */
  private connections(): number[] {
    const all: number[] = [];
    for (let s = 0; s < this.store.end; s++) if (this.store.has(s)) all.push(s);
    return all;
  }

  /** A link, neighbour or routing change: find the connections it may affect. */
  onRouteEvent(e: RouteEvent): void {
    for (let s = 0; s < this.store.end; s++) {
      if (!this.store.has(s)) continue;
      const effect = this.effectOf(s, e);
      if (effect === "stale") this.stale.add(s);
      else if (effect) this.teardown(s, effect);
    }
  }

  /** "stale" when the connection's next hops must be resolved again, a reason to hand it back, or null. */
  private effectOf(slot: number, e: RouteEvent): "stale" | string | null {
    if (e.kind === "routing") return "stale";
    let effect: "stale" | null = null;
    for (const d of [0, 1] as const) {
      const ingress = this.ingressOf(slot, d);
      if (!ingress) continue;
      const hop = this.hopOf(slot, d);
      if (e.kind === "link" && (ingress.ifindex === e.ifindex || hop.oif === e.ifindex || hop.l3Oif === e.ifindex)) {
        if (e.deleted || !e.up) return `device ${this.deviceName(e.ifindex)} ${e.deleted ? "removed" : "down"}`;
        effect = "stale"; // its MAC or MTU may have changed
      }
      // A station moved to another bridge port (or left): the port we send it to may be wrong.
      if (e.kind === "fdb" && sameBytes(e.lladdr, hop.dmac) && (e.deleted || e.ifindex !== hop.oif)) effect = "stale";
      // The neighbour lives on the routed device (a bridge, a VLAN device), not on the port.
      if (e.kind === "neigh" && (hop.l3Oif === e.ifindex || hop.oif === e.ifindex) && sameBytes(hop.gateway ?? this.planOf(slot, d).daddr, e.dst)) {
        const unchanged = !e.deleted && e.state & USABLE_NUD && e.lladdr && sameBytes(e.lladdr, hop.dmac);
        if (!unchanged) effect = "stale";
      }
    }
    return effect;
  }

  /**
   * Resolves up to `budget` stale connections again: updates, or hands back, what changed.
   * Returns whether some are left (the caller comes back soon, so events are not held up).
   */
  revalidate(budget = 1000): boolean {
    for (const slot of this.stale) {
      if (budget-- <= 0) return true;
      this.stale.delete(slot);
      for (const d of [0, 1] as const) {
        const ingress = this.ingressOf(slot, d);
        if (!ingress) continue;
        const old = this.hopOf(slot, d);
        const hop = this.resolve(this.planOf(slot, d), ingress, this.store.markOf(slot));
        if (typeof hop === "string") {
          this.teardown(slot, `next hop changed: ${hop}`);
          break;
        }
        const flags = this.flagsFor(hop);
        if (!sameHop(hop, old) || flags !== this.store.actFlags[slot * 2 + d]) this.install(slot, d, ingress, hop, "re-routed");
        else this.setDirection(slot, d, ingress, hop, flags);
      }
    }
    return false;
  }

  /**
   * Takes over the flows a previous run left in the (pinned) flow map: connections whose
   * conntrack entry is still offloadable stay on the fast path and are resolved again at once;
   * the others are removed. Returns how many connections were adopted.
   */
  adopt(): number {
    const dump = this.o.flows.dump();
    const K = LAYOUT.flow_key.size;
    const A = LAYOUT.flow_action.size;
    const groups = new Map<number, { key: Uint8Array; action: ReturnType<typeof decodeAction> }[]>();
    for (let i = 0; i < dump.count; i++) {
      const key = dump.keys.slice(i * K, (i + 1) * K);
      const action = decodeAction(dump.values.slice(i * A, (i + 1) * A));
      groups.set(action.connId, [...(groups.get(action.connId) ?? []), { key, action }]);
    }
    const now = performance.now();
    for (const [id, flows] of groups) {
      const entry = this.o.ct.get(keyTuple(decodeKey(flows[0]!.key)));
      const plans = entry ? ([planDirection(entry.orig, entry.reply, 0), planDirection(entry.orig, entry.reply, 1)] as const) : null;
      // Conntrack may have moved on while no daemon ran: a new entry for the tuple, another NAT.
      // The key must be the one this run would install, since it deletes by recomputing it.
      const current = entry && plans && flows.every((f) => {
        const k = decodeKey(f.key);
        const plan = plans[f.action.dir];
        return sameBytes(keyFor(plan, { ifindex: k.ifindex, encap: keyEncap(k) }), f.key) && rewriteMatches(f.action, plan);
      });
      const taken = entry !== null && (this.store.find(entry.orig) >= 0 || this.store.find(entry.reply) >= 0);
      if (!entry || !plans || !current || !offloadable(entry).ok || id >= this.o.maxFlows || this.store.has(id) || taken) {
        for (const f of flows) this.o.flows.delete(f.key);
        continue;
      }
      this.store.add(id, entry, now, 0, true);
      for (const { key, action: a } of flows) {
        // The next hop's address is not in the map: the revalidation below fills it in.
        const encap = keyEncap({ vlan: a.egressVlan, pppoeSid: a.egressPppoeSid, dsaPort: a.egressDsaTagger ? (a.egressDsaPort ?? 0) + 1 : 0 });
        const hop: NextHop = {
          oif: a.outIfindex, l3Oif: a.outIfindex, encap, gateway: null, gatewayFamily: entry.orig.family,
          dmac: a.dmac, smac: a.smac, mtu: a.mtu,
        };
        const k = decodeKey(key);
        this.setDirection(id, a.dir, { ifindex: k.ifindex, encap: keyEncap(k) }, hop, a.flags);
      }
      this.slots.reserve(id);
      this.stale.add(id);
    }
    return this.store.size;
  }

  /** Changes the devices whose flows must take the TC path; existing flows follow at once. */
  setTcOnly(devices: ReadonlySet<number>): void {
    this.tcOnly = devices;
    this.revalidateAll();
  }

  private flagsFor(hop: NextHop): number {
    return this.tcOnly.has(hop.oif) ? FLOW_ACT_TC_ONLY : 0;
  }

  /** Route events were lost: resolve every connection again. */
  revalidateAll(): void {
    for (const s of this.connections()) this.stale.add(s);
  }

  /**
   * Once a second: keep live conntrack entries alive, hand back idle and closing connections.
   * Many connections: the counters are read in batches of SWEEP_BATCH slots into a buffer kept
   * for the next sweep (a syscall per connection costs more; a fresh buffer, garbage).
   */
  sweep(): void {
    const now = performance.now();
    this.recent.releaseIfStale(now);
    const budget = { refreshes: REFRESH_BUDGET };
    const S = LAYOUT.flow_stats.size;
    if (this.store.size <= BATCH_READ_FROM) {
      for (let slot = 0; slot < this.store.end; slot++) {
        if (this.store.has(slot) && this.o.stats.lookup(this.u32(slot), this.statsBuf)) this.sweepOne(slot, this.statsView, 0, now, budget);
      }
    } else {
      for (let first = 0; first < this.store.end; first += SWEEP_BATCH) {
        const { count } = this.o.stats.dump({ limit: Math.min(SWEEP_BATCH, this.store.end - first), from: first, into: this.batch });
        for (let i = 0; i < count; i++) if (this.store.has(first + i)) this.sweepOne(first + i, this.batchView, i * S, now, budget);
      }
    }
    for (const [id, p] of this.pending) if (now - p.since > PENDING_MS) this.pending.delete(id);
  }

  /** One connection's part of the sweep, its counters at `off` in `v`. */
  private sweepOne(slot: number, v: DataView, off: number, now: number, budget: { refreshes: number }): void {
    const st = this.store;
    if (statsFlags(v, off) & FLOW_STATS_CLOSING) return this.teardown(slot, "FIN/RST");
    const orig = statsPackets(v, off, 0);
    const reply = statsPackets(v, off, 1);
    if (orig + reply !== st.packets[slot]) {
      st.packets[slot] = orig + reply;
      st.lastActive[slot] = now;
      st.setActiveSinceRefresh(slot, true);
    }
    const proto = st.protoOf(slot);
    // The kernel assures a UDP entry once it has carried a stream both ways for a while; it
    // sees none of this stream now, so the daemon does it (else table-full eviction hits it).
    const udpStream = proto === IPPROTO_UDP && !(st.statusOf(slot) & IPS_ASSURED);
    if (udpStream && orig > 0 && reply > 0 && now - st.offloadedAt[slot]! >= UDP_STREAM_MS) {
      const entry = st.entry(slot);
      if (!this.o.ct.assure(entry)) return this.teardown(slot, "conntrack entry gone");
      st.setStatus(slot, entry.status);
    }
    const idleMs = proto === 6 ? this.o.tcpTimeoutMs : this.o.udpTimeoutMs;
    if (now - st.lastActive[slot]! > idleMs) return this.teardown(slot, "idle");
    if (!st.activeSinceRefresh(slot)) return;
    const timeoutS = this.timeoutOf(slot);
    if (now - st.lastRefresh[slot]! >= (timeoutS * 1000) / 3 && budget.refreshes-- > 0) {
      st.lastRefresh[slot] = now;
      st.setActiveSinceRefresh(slot, false);
      if (!this.o.ct.refresh(st.entry(slot), timeoutS)) this.teardown(slot, "conntrack entry gone");
    }
  }

  /** defaultTimeout() of a connection's entry, without building the entry. */
  private timeoutOf(slot: number): number {
    const probe = this.timeoutProbe;
    probe.orig.proto = this.store.protoOf(slot);
    probe.status = this.store.statusOf(slot);
    probe.tcpState = this.store.tcpStateOf(slot);
    return defaultTimeout(probe);
  }

  /**
   * Conntrack events were lost (the event socket overflowed): re-read every offloaded
   * connection's entry and hand back those that are gone or changed. What the recent events
   * said may be stale: forgotten. Pending flows are retried by settleNewFlows() or the
   * datapath's next new-flow report.
   */
  resync(): void {
    this.recent.clear();
    const before = this.store.size;
    // A dump reads the whole table, a lookup costs a round trip: dump when most entries are ours.
    const count = this.o.ct.count();
    const dropped = count !== null && before * DUMP_SHARE >= count ? this.resyncByDump() : this.resyncByLookups();
    this.o.log.warn(`conntrack events were lost; resynchronised ${before} connections, ${dropped} handed back`);
  }

  private resyncByLookups(): number {
    let dropped = 0;
    for (const slot of this.connections()) {
      const now = this.o.ct.get(this.store.tuple(slot, 0));
      if (now && this.stillOffloadable(slot, now)) continue;
      this.teardown(slot, now ? "conntrack entry changed" : "conntrack entry gone");
      dropped++;
    }
    return dropped;
  }

  /**
   * One dump: the offloaded connections' entries are checked, the others kept as recent
   * entries (a flood's reports then find theirs without a lookup each: after a loss, a lookup
   * per report slowed the daemon down enough to lose events again).
   */
  private resyncByDump(): number {
    const FOUND = 1;
    const CHANGED = 2;
    const seen = new Uint8Array(this.store.end);
    const now = performance.now();
    this.o.ct.dump((e) => {
      const found = this.store.find(e.orig);
      // Nothing is offloaded from here: that may query conntrack, whose handle the dump holds.
      if (found < 0) return this.recent.put(e, now);
      // Only an entry whose orig tuple is the connection's (not its reply tuple), in its zone.
      if ((found & 1) !== 0) return;
      const slot = found >> 1;
      if (e.zone !== this.store.zoneOf(slot)) return;
      seen[slot] = seen[slot]! | FOUND | (this.stillOffloadable(slot, e) ? 0 : CHANGED);
    });
    let dropped = 0;
    for (const slot of this.connections()) {
      const why = seen[slot]! & CHANGED ? "conntrack entry changed" : seen[slot]! & FOUND ? null : "conntrack entry gone";
      if (why === null) continue;
      this.teardown(slot, why);
      dropped++;
    }
    return dropped;
  }

  /** One line per offloaded connection, for SIGUSR1 and the demo. */
  describe(): string[] {
    const now = performance.now();
    return this.connections().map((slot) => {
      const s = this.readStats(slot);
      const dirs = ([0, 1] as const).map((d) => {
        const ingress = this.ingressOf(slot, d);
        const st = s?.dir[d];
        const path = ingress ? `${this.deviceName(ingress.ifindex)}->${this.deviceName(this.hopOf(slot, d).oif)}` : "kernel";
        return `${d === 0 ? "orig" : "reply"} ${path} packets=${st?.packets ?? 0n} bytes=${st?.bytes ?? 0n}`;
      });
      const idle = Math.round((now - this.store.lastActive[slot]!) / 1000);
      return `${describeTuple(this.store.tuple(slot, 0))}${natNote(this.planOf(slot, 0))} ${dirs.join(" ")} idle=${idle}s`;
    });
  }

  /**
   * After a burst, before the daemon collects its garbage: the recent entries' store (resident
   * up to ~2 MiB) goes with it. Its entries would only have saved lookups.
   */
  releaseRecent(): void {
    this.recent.clear();
  }

  /** Removes every flow (shutdown). */
  clear(reason: string): void {
    for (const slot of this.connections()) this.teardown(slot, reason);
    this.pending.clear();
    this.recent.clear();
    this.fresh = [];
    this.freshAt = [];
  }

  private readStats(id: number): FlowStats | null {
    return this.o.stats.lookup(this.u32(id), this.statsBuf) ? decodeStats(this.statsBuf) : null;
  }

  private u32(n: number): Uint8Array {
    new DataView(this.idBuf.buffer).setUint32(0, n, true);
    return this.idBuf;
  }

  deviceName(ifindex: number): string {
    return this.o.devices.get(ifindex) ?? `if${ifindex}`;
  }

  private warnFull(): void {
    if (this.fullWarned) return;
    this.fullWarned = true;
    this.o.log.warn(`flow table full (${this.o.maxFlows} flows): new flows stay on the kernel path; raise --max-flows`);
  }
}

function natNote(p: DirectionPlan): string {
  const parts: string[] = [];
  if (p.snat) parts.push(`snat ${formatEndpoint(p.match.family, p.saddr, p.sport)}`);
  if (p.dnat) parts.push(`dnat ${formatEndpoint(p.match.family, p.daddr, p.dport)}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function sameIngress(a: Ingress, b: Ingress): boolean {
  return a.ifindex === b.ifindex && sameEncap(a.encap, b.encap);
}

function sameHop(a: NextHop, b: NextHop): boolean {
  return a.oif === b.oif && a.mtu === b.mtu && sameBytes(a.dmac, b.dmac) && sameBytes(a.smac, b.smac) && sameEncap(a.encap, b.encap);
}

/** Whether an installed action still rewrites as the conntrack entry's NAT says. */
function rewriteMatches(a: FlowAction, p: DirectionPlan): boolean {
  return sameBytes(a.saddr, p.saddr) && sameBytes(a.daddr, p.daddr) && a.sport === p.sport && a.dport === p.dport;
}

/** The flow map key of a direction's packets arriving at `ingress`. */
/** Flow map keys and actions are built here: the map copies them at once, so one buffer each will do. */
const keyBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_key.size));
const actionBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_action.size));

/** A direction's flow map key, in a buffer the next call overwrites. */
function keyFor(plan: DirectionPlan, ingress: Ingress): Uint8Array {
  const m = plan.match;
  keyBuf.fill(0); // addresses of 4 bytes leave the rest of the 16 as they were
  encodeKeyInto({
    ifindex: ingress.ifindex, family: m.family, proto: m.proto, ...encapKeyFields(ingress.encap),
    sport: m.sport, dport: m.dport, saddr: m.src, daddr: m.dst,
  }, keyBuf);
  return keyBuf;
}
