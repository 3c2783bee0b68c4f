// The dropper: packets the kernel drops anyway are dropped at XDP instead, learned from the
// kernel's own verdicts (bpf/dropper.bpf.c watches skb:kfree_skb) and never from parsing the
// ruleset. Two sources, each turned into FLOW_ACT_DROP entries of the flow map keyed like flows
// (lowest ingress device, encapsulation, 5-tuple):
//   - blackhole routes: a packet the input route lookup drops silently. Every packet with the
//     same key meets the same route; route, address, link and ruleset changes flush the entries.
//   - netfilter verdicts (`--drop learn` only): a TCP SYN or UDP packet that opened no connection
//     (no confirmed conntrack entry) dropped by a rule. A rule with a rate limit, a quota, a time
//     condition or a set that changes may drop one packet and accept the next: entries expire
//     after `--drop-timeout` seconds without hits and at the latest MAX_AGE_TIMEOUTS timeouts
//     after they were learned, when the kernel judges the next packet again.
// What happens to an entry is decided here; the tracepoint only reports, the datapath only drops.
import { constants } from "node:os";
import { existsSync, readFileSync, statSync } from "node:fs";
import { BPF_NOEXIST, libbpf } from "../ffi/libbpf.ts";
import { close } from "../ffi/libc.ts";
import {
  AF_INET, AF_INET6, FLOW_ACT_DROP, FLOW_ACT_DROP_SYN, IPPROTO_TCP, IPPROTO_UDP, LAYOUT, decodeAction, decodeStats,
  encodeAction, encodeKey, type FlowKey,
} from "./abi.ts";
import { BpfObject, BpfError, RingBuffer, type BpfMap } from "./bpf.ts";
import type { Conntrack, CtEntry } from "./conntrack.ts";
import { DROP_CT_NONE, DROP_EV_NETFILTER, DROP_EV_ROUTE, decodeDropEvent, encodeDropParams, type DropEvent } from "./dropper-abi.ts";
import { describeEncap, encapKeyFields } from "./encap.ts";
import { describeTuple, keyTuple, tupleId } from "./flows.ts";
import type { Logger } from "./log.ts";
import type { RouteQuery, Rtnl } from "./nexthop.ts";
import { SlotAllocator } from "./slots.ts";

/** `--drop`: nothing, blackhole routes, or blackhole routes and learnt netfilter drops. */
export type DropMode = "off" | "blackhole" | "learn";

/** Drop entries at most (flow map entries and flow_stats slots reserved beyond --max-flows). */
export const MAX_DROP_ENTRIES = 4096;
/** A learned (netfilter) entry lives at most this many drop timeouts, hits or not. */
export const MAX_AGE_TIMEOUTS = 4;
/** At most one tracepoint event per packet key per this interval. */
const NOTIFY_INTERVAL_NS = 200_000_000n;
/** At most this many tracepoint events per CPU per second (a flood from changing ports). */
const EVENTS_PER_CPU_S = 500;
const SLOT_REST_MS = 2_000;
/** Where the kernel publishes its own BTF (CONFIG_DEBUG_INFO_BTF); libbpf looks here first. */
const VMLINUX_BTF = "/sys/kernel/btf/vmlinux";

// linux/netfilter/nf_conntrack_common.h
const IP_CT_NEW = 2;
const IP_CT_UNTRACKED = 7;
const IPS_CONFIRMED = 1 << 3;
const IPS_NAT_MASK = (1 << 4) | (1 << 5);
// TCP header flags byte
const TCP_FIN = 0x01;
const TCP_SYN = 0x02;
const TCP_RST = 0x04;
const TCP_ACK = 0x10;

export type DropKind = "netfilter" | "blackhole";

/**
 * Whether a reported drop may become a drop entry, judged from the event alone (the daemon then
 * asks conntrack or the FIB). A string says why not.
 */
export function eligible(ev: DropEvent, learn: boolean): DropKind | string {
  if (ev.family !== AF_INET && ev.family !== AF_INET6) return "not IPv4 or IPv6";
  if (ev.proto !== IPPROTO_TCP && ev.proto !== IPPROTO_UDP) return "not TCP or UDP";
  // NAT rewrote the headers before the drop: the packet no longer says what arrived.
  if (ev.ctStatus & IPS_NAT_MASK) return "NATed before the drop";
  if (ev.kind === DROP_EV_ROUTE) {
    // The ruleset may set marks for reasons of its own: leave policy-routed packets to the kernel.
    return ev.mark ? "packet mark set" : "blackhole";
  }
  if (ev.kind !== DROP_EV_NETFILTER) return `unknown event kind ${ev.kind}`;
  if (!learn) return "drop learning is off";
  if (ev.proto === IPPROTO_TCP && (ev.tcpFlags & (TCP_SYN | TCP_ACK | TCP_FIN | TCP_RST)) !== TCP_SYN) return "TCP packet other than a SYN";
  const opensNothing = ev.ctInfo === DROP_CT_NONE || ev.ctInfo === IP_CT_UNTRACKED ||
    (ev.ctInfo === IP_CT_NEW && !(ev.ctStatus & IPS_CONFIRMED));
  return opensNothing ? "netfilter" : "packet of a known connection";
}

/** True when a learned entry has had its time: idle for a timeout, or older than its maximum age. */
export function expired(e: { kind: DropKind; since: number; lastHit: number }, now: number, timeoutMs: number): boolean {
  if (now - e.lastHit >= timeoutMs) return true;
  return e.kind === "netfilter" && now - e.since >= MAX_AGE_TIMEOUTS * timeoutMs;
}

/** Tables of iptables-legacy exist: their rule changes come with no netlink notification. */
export function iptablesLegacyInUse(): boolean {
  for (const f of ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]) {
    try {
      if (readFileSync(f, "utf8").trim()) return true;
    } catch {
      // no legacy iptables in this kernel
    }
  }
  return false;
}

interface DropEntry {
  key: Uint8Array;
  tuple: string;
  slot: number;
  kind: DropKind;
  /** The input route lookup that drops the packets (blackhole entries). */
  route: RouteQuery | null;
  what: string;
  since: number;
  lastHit: number;
  packets: bigint;
}

export interface DropperOptions {
  mode: Exclude<DropMode, "off">;
  timeoutMs: number;
  flows: BpfMap;
  stats: BpfMap;
  /** flow_stats slots [firstSlot, firstSlot + MAX_DROP_ENTRIES) are the dropper's. */
  firstSlot: number;
  rtnl: Rtnl;
  ct: Conntrack;
  log: Logger;
  /** Devices the datapath is attached to. */
  devices: ReadonlyMap<number, string>;
}

export interface DropperStatus {
  mode: DropMode;
  timeoutS: number;
  entries: { netfilter: number; blackhole: number };
  /** Packets dropped at XDP by entries since the start (removed entries included). */
  packets: number;
  flushes: number;
}

const Z6 = new Uint8Array(6);
const keyId = (key: Uint8Array) => Buffer.from(key).toString("hex");

export class Dropper {
  private readonly entries = new Map<string, DropEntry>();
  private readonly byTuple = new Map<string, Set<DropEntry>>();
  private readonly slots = new SlotAllocator(MAX_DROP_ENTRIES, SLOT_REST_MS);
  private readonly statsBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_stats.size));
  private readonly actionBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_action.size));
  private readonly idBuf = new Uint8Array(new ArrayBuffer(4));
  private packets = 0n;
  private flushes = 0;
  private fullWarned = false;

  constructor(private readonly o: DropperOptions) {}

  /** A drop the tracepoint reported. */
  onEvent(ev: DropEvent): void {
    const kind = eligible(ev, this.o.mode === "learn");
    const tuple = { family: ev.family as 2 | 10, proto: ev.proto, src: ev.saddr, dst: ev.daddr, sport: ev.sport, dport: ev.dport };
    const what = describeTuple(tuple);
    if (kind !== "netfilter" && kind !== "blackhole") return this.skip(what, kind);
    if (kind === "netfilter" && this.o.ct.get(tuple)) return this.skip(what, "conntrack has a connection for it");
    const route = kind === "blackhole" ? { ...tuple, iif: ev.iif, mark: 0 } : null;
    if (route && !this.o.rtnl.silentlyDropped(route)) {
      return this.skip(what, "the route lookup does not drop it");
    }
    if (ev.smac.every((b) => b === 0)) return this.skip(what, "no Ethernet source address");
    const down = this.o.rtnl.ingressPath(ev.iif, ev.smac);
    if (!down.ok) return this.skip(what, down.reason);
    const path = down.path;
    if (!this.o.devices.has(path.oif)) return this.skip(what, `ingress ${path.path.join(" > ")} is not an offloaded device`);
    if (this.o.rtnl.ingressDevice(path.oif, path.encap) !== ev.iif) return this.skip(what, "ingress device does not map back to the L3 device");
    const key: FlowKey = {
      ifindex: path.oif, family: ev.family, proto: ev.proto, ...encapKeyFields(path.encap),
      sport: ev.sport, dport: ev.dport, saddr: ev.saddr, daddr: ev.daddr,
    };
    const flags = FLOW_ACT_DROP | (kind === "netfilter" && ev.proto === IPPROTO_TCP ? FLOW_ACT_DROP_SYN : 0);
    // The frame went to the L3 device's MAC (the PPPoE device's, from the session's peer).
    this.install(key, kind, route, `${what} on ${this.o.devices.get(path.oif)}${describeEncap(path.encap)}`, flags, path.smac, path.encap.pppoeSid !== null ? ev.smac : Z6);
  }

  private skip(what: string, why: string): void {
    if (this.o.log.enabled("debug")) this.o.log.debug(`not dropping ${what} at XDP: ${why}`);
  }

  private install(k: FlowKey, kind: DropKind, route: RouteQuery | null, what: string, flags: number, ingressDmac: Uint8Array, ingressSmac: Uint8Array): void {
    const key = encodeKey(k);
    const id = keyId(key);
    const now = performance.now();
    const known = this.entries.get(id);
    if (known) {
      // Reported again: a packet reached the kernel (another CPU raced the install).
      known.lastHit = now;
      return;
    }
    const slot = this.entries.size < MAX_DROP_ENTRIES ? this.slots.alloc() : null;
    if (slot === null) {
      if (!this.fullWarned) this.o.log.warn(`${MAX_DROP_ENTRIES} drop entries in use: further drops stay with the kernel`);
      this.fullWarned = true;
      return;
    }
    const connId = this.o.firstSlot + slot;
    this.o.stats.update(this.u32(connId), new Uint8Array(new ArrayBuffer(LAYOUT.flow_stats.size)));
    const action = encodeAction({
      outIfindex: 0, connId, dir: 0, flags, mtu: 0, dmac: Z6, smac: Z6, saddr: k.saddr, daddr: k.daddr, sport: k.sport, dport: k.dport,
      l3CsumDelta: 0, l4CsumPseudo: 0, l4CsumPorts: 0, egressVlan: [0, 0], egressPppoeSid: 0, ingressDmac, ingressSmac,
    });
    try {
      // Never over an offloaded flow's entry.
      this.o.flows.update(key, action, BPF_NOEXIST);
    } catch (e) {
      this.slots.release(slot);
      if (!(e instanceof BpfError && e.errno === constants.errno.EEXIST)) throw e;
      return this.skip(what, "the flow map has an entry for it");
    }
    const tuple = tupleId(keyTuple(k));
    const entry: DropEntry = { key, tuple, slot, kind, route, what, since: now, lastHit: now, packets: 0n };
    this.entries.set(id, entry);
    let set = this.byTuple.get(tuple);
    if (!set) this.byTuple.set(tuple, (set = new Set()));
    set.add(entry);
    this.o.log.info(`dropping at XDP: ${what} (${kind === "netfilter" ? "netfilter verdict" : "blackhole route"})`);
  }

  private remove(e: DropEntry): void {
    // Only our own entry: the flow table may have installed a connection under the key since.
    if (this.o.flows.lookup(e.key, this.actionBuf)) {
      const a = decodeAction(this.actionBuf);
      if (a.flags & FLOW_ACT_DROP && a.connId === this.o.firstSlot + e.slot) this.o.flows.delete(e.key);
    }
    this.readHits(e);
    this.slots.release(e.slot);
    this.entries.delete(keyId(e.key));
    const set = this.byTuple.get(e.tuple);
    set?.delete(e);
    if (set?.size === 0) this.byTuple.delete(e.tuple);
  }

  /** Adds the entry's new hits to the counters; true when there were any. */
  private readHits(e: DropEntry): boolean {
    if (!this.o.stats.lookup(this.u32(this.o.firstSlot + e.slot), this.statsBuf)) return false;
    const n = decodeStats(this.statsBuf).dir[0].packets;
    if (n === e.packets) return false;
    this.packets += n - e.packets;
    e.packets = n;
    return true;
  }

  /** Once a second: renew entries that were hit, remove expired ones. */
  sweep(): void {
    const now = performance.now();
    for (const e of [...this.entries.values()]) {
      if (this.readHits(e)) e.lastHit = now;
      if (expired(e, now, this.o.timeoutMs)) {
        this.remove(e);
        this.o.log.debug(`no longer dropping at XDP: ${e.what} (${e.packets} packets dropped)`);
      }
    }
  }

  /** A connection appeared: no packet of either of its directions may be dropped any more. */
  onConntrackNew(entry: CtEntry): void {
    for (const t of [entry.orig, entry.reply]) {
      for (const e of [...(this.byTuple.get(tupleId(t)) ?? [])]) this.remove(e);
    }
  }

  /**
   * Routes, rules or addresses changed (the kernel also announces routes it adds by itself):
   * blackhole entries stay while the route lookup still drops their packets. Learnt entries go:
   * a verdict may depend on the route (an `oifname` rule in the forward chain, `fib`, rpfilter).
   */
  onRoutingChange(): void {
    let learnt = 0;
    let routed = 0;
    for (const e of [...this.entries.values()]) {
      if (e.route && this.o.rtnl.silentlyDropped(e.route)) continue;
      this.remove(e);
      if (e.route) routed++;
      else learnt++;
    }
    const entries = (n: number) => `${n} drop entr${n === 1 ? "y" : "ies"}`;
    if (routed) this.o.log.info(`removed ${entries(routed)}: the route lookup no longer drops their packets`);
    if (learnt) this.o.log.info(`removed ${entries(learnt)}: a route, rule or address changed`);
  }

  /** Everything goes: the ruleset or an interface changed. */
  flush(reason: string): void {
    const n = this.entries.size;
    if (!n) return;
    for (const e of [...this.entries.values()]) this.remove(e);
    this.flushes++;
    this.o.log.info(`removed ${n} drop entr${n === 1 ? "y" : "ies"}: ${reason}`);
  }

  status(): DropperStatus {
    const entries = { netfilter: 0, blackhole: 0 };
    for (const e of this.entries.values()) entries[e.kind]++;
    return { mode: this.o.mode, timeoutS: this.o.timeoutMs / 1000, entries, packets: Number(this.packets), flushes: this.flushes };
  }

  /** One line per drop entry, for SIGUSR1. */
  describe(): string[] {
    return [...this.entries.values()].map((e) => `drop ${e.what} (${e.kind}) packets=${e.packets}`);
  }

  private u32(n: number): Uint8Array {
    new DataView(this.idBuf.buffer).setUint32(0, n, true);
    return this.idBuf;
  }
}

/** The tracepoint program, attached: its drop reports go to onEvent. */
export class DropObserver {
  private link: number;
  private readonly rb: RingBuffer;

  private constructor(private readonly obj: BpfObject, onEvent: (ev: DropEvent) => void) {
    this.rb = new RingBuffer(obj.map("drop_events"), (s) => onEvent(decodeDropEvent(s)));
    this.link = libbpf.symbols.bpf_raw_tracepoint_open(null, obj.programFd("observe_drop"));
    if (this.link < 0) {
      this.rb.close();
      throw new BpfError("cannot attach to the skb:kfree_skb tracepoint", -this.link);
    }
  }

  /**
   * Loads and attaches the tracepoint program; throws an error whose message says in a few words
   * why the kernel can't have it (no BTF, no drop reasons in skb:kfree_skb before Linux 5.17).
   */
  static start(bytes: Uint8Array, learn: boolean, onEvent: (ev: DropEvent) => void): DropObserver {
    // A tp_btf program is typed by the kernel's BTF: without it libbpf fails with a bare ESRCH.
    if (!existsSync(VMLINUX_BTF)) throw new Error(`the kernel has no BTF: no ${VMLINUX_BTF}, it was built without CONFIG_DEBUG_INFO_BTF`);
    const netnsIno = BigInt(statSync("/proc/self/ns/net").ino);
    const obj = BpfObject.open(bytes, {
      name: "dropper",
      params: encodeDropParams({ netnsIno, notifyIntervalNs: NOTIFY_INTERVAL_NS, netfilter: learn, eventsPerCpuS: EVENTS_PER_CPU_S }),
    });
    try {
      obj.load();
    } catch (e) {
      obj.close();
      throw new Error(`the kernel refuses the skb:kfree_skb tracepoint program, which needs Linux 5.17+: ${(e as Error).message.split("\n")[0]}`);
    }
    try {
      return new DropObserver(obj, onEvent);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  get fd(): number {
    return this.rb.fd;
  }

  poll(): void {
    this.rb.poll(0);
  }

  close(): void {
    if (this.link >= 0) close(this.link);
    this.link = -1;
    this.rb.close();
    this.obj.close();
  }
}
