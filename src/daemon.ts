// The offloader daemon: loads the datapath, attaches it, and wires datapath events, conntrack
// events and the once-a-second sweep into the flow table.
import objectPath from "../build/offload.bpf.o" with { type: "file" };
import dropperObjectPath from "../build/dropper.bpf.o" with { type: "file" };
import { FLOW_EV_CLOSING, FLOW_EV_NEW, IFACE_SLOTS, LAYOUT, decodeEvent, encodeConfig, encodeIfaceSlot, encodeParams, placeIfaces } from "./abi.ts";
import { type Attachment, AttachError, type Hook, attach } from "./attach.ts";
import { constants } from "node:os";
import { BpfObject, RingBuffer } from "./bpf.ts";
import { type Conduit, conduitInstanceKey, describeConduit, planConduits } from "./conduits.ts";
import { Conntrack, ConntrackEvents } from "./conntrack.ts";
import { DropObserver, Dropper, MAX_AGE_TIMEOUTS, MAX_DROP_ENTRIES, iptablesLegacyInUse, type DropMode } from "./dropper.ts";
import { RulesetEvents } from "./nftevents.ts";
import { FlowTable } from "./flows.ts";
import type { Logger } from "./log.ts";
import { type LowerDevice, Rtnl } from "./nexthop.ts";
import { RouteEvents } from "./rtevents.ts";
import { Wakeup } from "./wakeup.ts";
import { tcOnlyReason } from "./egress.ts";
import { queryXdpFeatures } from "./genl.ts";
import { PINNED_MAPS, ensureDir, lockPinPath, pinPathProblem, removePins } from "./pins.ts";
import { readLiveStatus, removeStatus, writeStatus } from "./status.ts";
import { VERSION } from "./version.ts";
import { closeSync, existsSync } from "node:fs";
import { ifIndexToName, monotonicNs } from "../ffi/libc.ts";
import { NF_NETLINK_CONNTRACK_DESTROY, NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE } from "../ffi/conntrack.ts";

export type HookChoice = Hook | "auto" | "xdp";

export interface DaemonConfig {
  interfaces: string[];
  /** bpffs directory for the maps that outlive the process; null: no pinning. */
  pinPath: string | null;
  /** Directory of the status file. */
  runDir: string;
  /** PPP device -> the Ethernet device of its PPPoE session, where pppd's command line doesn't tell. */
  pppoe: Readonly<Record<string, string>>;
  /** Only say what would be attached. */
  dryRun: boolean;
  /** Conduit mode: attach to DSA conduits (one program instance per tagger) instead of their user ports. */
  dsa: boolean;
  hook: HookChoice;
  maxFlows: number;
  tcpTimeoutS: number;
  udpTimeoutS: number;
  heartbeatTimeoutS: number;
  /** What the dropper drops at XDP (see dropper.ts). */
  drop: DropMode;
  dropTimeoutS: number;
}

const { EBUSY } = constants.errno;

/** At most one new-flow event per unknown flow per this interval. */
const NOTIFY_INTERVAL_NS = 500_000_000n;
/** Datapath reports handled per poll() at most. */
const REPORTS_PER_POLL = 2048;
/** A new-flow report in the ring: an 8-byte header and the event, 8-byte aligned. */
const RING_SAMPLE_BYTES = 8 + Math.ceil(LAYOUT.flow_event.size / 8) * 8;
/** New connections after which a quiet second brings a full garbage collection (collectAfterBurst). */
const COLLECT_AFTER = 4096;

/**
 * The new-flow ring buffer: room for a burst of reports of about a fifth of --max-flows (a
 * report takes 72 bytes with its header), 256 KiB to 1 MiB. A report lost to a full ring waits
 * for the flow's next packet, half a second at least, so a flood of new flows is offloaded only
 * as fast as the ring holds their reports between two wake-ups. 1 MiB holds about 14,500
 * reports, half a second of the daemon's rate: with --max-flows 131072 a 2 MiB ring offloaded a
 * 64,000-flow flood at 30-42k flows/s, 1 MiB at 28-33k (side by side). The kernel maps the whole
 * ring into the daemon twice: every MiB of ring is 2 MiB of its RSS.
 */
export function eventRingBytes(maxFlows: number): number {
  let bytes = 256 * 1024;
  while (bytes < maxFlows * 16 && bytes < 1024 * 1024) bytes *= 2;
  return bytes;
}

/** The daemon can't start for a reason the admin must fix. */
export class DaemonError extends Error {}

export class Daemon {
  private obj: BpfObject;
  /** Program instances for DSA conduits, by conduitInstanceKey; they share the maps of `obj`. */
  private readonly instances = new Map<string, BpfObject>();
  /** The attached DSA conduits (conduit mode), by ifindex. */
  private conduits = new Map<number, Conduit>();
  private readonly startedAt = Date.now();
  private readonly attachments: Attachment[] = [];
  private rtnl: Rtnl | null = null;
  private ct: Conntrack | null = null;
  private events: ConntrackEvents | null = null;
  private rb: RingBuffer | null = null;
  private routeEvents: RouteEvents | null = null;
  private wakeup: Wakeup | null = null;
  private pollTimer: Timer | null = null;
  private pollTimerMs = 0;
  private topologyChanged = false;
  private egressChanged = false;
  /** Egress devices whose flows take the TC path, with why (see egress.ts). */
  private tcOnly = new Map<number, string>();
  private table: FlowTable | null = null;
  private dropper: Dropper | null = null;
  private dropObserver: DropObserver | null = null;
  private rulesetEvents: RulesetEvents | null = null;
  private timers: ReturnType<typeof setInterval>[] = [];
  /** FlowTable.offloads at the last timer tick and at the last full collection. */
  private offloadsSeen = 0;
  private offloadsCollected = 0;
  /** The devices the datapath is attached to, by ifindex. */
  private readonly devices = new Map<number, string>();

  private constructor(
    private readonly cfg: DaemonConfig,
    private readonly log: Logger,
    private readonly bytes: Uint8Array,
    private readonly pinPath: string | null,
    /** The flock on the pin directory: only its holder may reuse or remove the pins. */
    private readonly pinLock: number | null,
  ) {
    this.obj = this.open();
  }

  /** The load-time parameters; a conduit's instance adds its tagger and user ports. */
  private params(conduit?: Conduit): Uint8Array {
    return encodeParams({
      heartbeatTimeoutNs: BigInt(this.cfg.heartbeatTimeoutS) * 1_000_000_000n,
      notifyIntervalNs: NOTIFY_INTERVAL_NS,
      ...(conduit ? { dsaTagger: conduit.taggerId, dsaPorts: conduit.ports } : {}),
    });
  }

  private open(): BpfObject {
    return BpfObject.open(this.bytes, {
      // The dropper's entries and counter slots come after the flow table's.
      maxEntries: {
        flows: this.cfg.maxFlows + MAX_DROP_ENTRIES,
        flow_stats: this.cfg.maxFlows + MAX_DROP_ENTRIES,
        flow_events: eventRingBytes(this.cfg.maxFlows),
      },
      params: this.params(),
      pin: this.pinPath ? { dir: this.pinPath, maps: PINNED_MAPS } : undefined,
    });
  }

  /** The programs for a device: a conduit's instance (loaded on first use) or the plain ones. */
  private programsFor(ifindex: number): { xdp: number; tc: number } {
    const c = this.conduits.get(ifindex);
    let obj = this.obj;
    if (c) {
      const key = conduitInstanceKey(c);
      let inst = this.instances.get(key);
      if (!inst) {
        inst = BpfObject.open(this.bytes, {
          name: `offload_${c.tagger.replace(/[^a-z0-9]/g, "_")}`.slice(0, 15),
          params: this.params(c),
          shareMapsOf: this.obj,
        });
        this.instances.set(key, inst);
        inst.load();
      }
      obj = inst;
    }
    return { xdp: obj.programFd("offload_xdp"), tc: obj.programFd("offload_tc") };
  }

  /** Loads, attaches and starts; on failure nothing stays attached. */
  static async start(cfg: DaemonConfig, log: Logger): Promise<Daemon> {
    ensureDir(cfg.runDir);
    const other = readLiveStatus(cfg.runDir);
    if (other) throw new DaemonError(`another ebpf-offloader (pid ${other.pid}) is running with run directory ${cfg.runDir}`);
    let pinPath = cfg.pinPath;
    const problem = pinPath ? pinPathProblem(pinPath) : null;
    if (problem) {
      log.warn(`not pinning maps (no adoption after a restart, no \`flows\` view): ${problem}`);
      pinPath = null;
    }
    let pinLock: number | null = null;
    if (pinPath) {
      ensureDir(pinPath);
      pinLock = lockPinPath(pinPath);
      if (pinLock === null) throw new DaemonError(`another ebpf-offloader uses the pinned maps in ${pinPath}`);
    }
    const d = new Daemon(cfg, log, await Bun.file(objectPath).bytes(), pinPath, pinLock);
    try {
      d.startInner(cfg.drop === "off" ? null : await Bun.file(dropperObjectPath).bytes());
      return d;
    } catch (e) {
      d.stop();
      throw e;
    }
  }

  /** Loads the object; pinned maps of an earlier run that don't fit this one are discarded. */
  private load(): void {
    try {
      this.obj.load();
    } catch (e) {
      if (!this.pinPath || !existsSync(`${this.pinPath}/flows`)) throw e;
      this.log.warn(`discarding the pinned maps of an earlier run in ${this.pinPath}: they don't fit this one (${(e as Error).message})`);
      this.obj.close();
      removePins(this.pinPath);
      ensureDir(this.pinPath);
      this.obj = this.open();
      this.obj.load();
    }
  }

  /** `dropperBytes`: the dropper's BPF object, null when it stays off. */
  private startInner(dropperBytes: Uint8Array | null): void {
    this.load();
    const cfg = this.cfg;
    this.rtnl = new Rtnl({ pppoe: cfg.pppoe, dsa: cfg.dsa });
    this.ct = new Conntrack();
    const devices = this.devices;
    const table = new FlowTable({
      flows: this.obj.map("flows"),
      stats: this.obj.map("flow_stats"),
      ct: this.ct,
      rtnl: this.rtnl,
      log: this.log,
      devices,
      maxFlows: cfg.maxFlows,
      reportBacklog: Math.floor(eventRingBytes(cfg.maxFlows) / RING_SAMPLE_BYTES),
      tcpTimeoutMs: cfg.tcpTimeoutS * 1000,
      udpTimeoutMs: cfg.udpTimeoutS * 1000,
    });
    this.table = table;
    // Before anything takes the fast path again: flows conntrack no longer agrees with go.
    const adopted = table.adopt();
    if (adopted) this.log.info(`adopted ${adopted} offloaded connection(s) from the previous run`);
    this.heartbeat();
    const lower = this.lowerDevices(this.rtnl);
    if (cfg.dsa) this.conduits = planConduits(this.rtnl.topology, lower);
    for (const c of this.conduits.values()) this.log.info(`${c.ifname}: ${describeConduit(c)}`);
    for (const a of this.attachAll(lower)) {
      this.attachments.push(a);
      devices.set(a.ifindex, a.ifname);
      this.log.info(`attached to ${a.ifname} (${a.hook})`);
    }
    this.placeIfaceStats();
    this.applyEgressPolicy();
    this.events = new ConntrackEvents(
      NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY,
      (type, entry) => {
        if (type === "new") this.dropper?.onConntrackNew(entry);
        return type === "destroy" ? table.onConntrackDestroy(entry) : table.onConntrackChange(entry);
      },
    );
    this.routeEvents = new RouteEvents((e) => {
      // The device stack may have changed (a port joined a bridge, a VLAN device appeared).
      if (e.kind === "link") this.topologyChanged = true;
      if (e.kind === "qdisc" || e.kind === "link") this.egressChanged = true;
      this.rtnl?.invalidate(e);
      if (e.kind === "link") this.dropper?.flush("an interface changed");
      if (e.kind === "routing") this.dropper?.onRoutingChange();
      table.onRouteEvent(e);
    });
    this.rb = new RingBuffer(this.obj.map("flow_events"), (sample) => {
      const ev = decodeEvent(sample);
      if (ev.type === FLOW_EV_NEW) table.onNewFlow(ev.key);
      else if (ev.type === FLOW_EV_CLOSING) table.onClosing(ev.connId);
    });
    if (dropperBytes) this.startDropper(dropperBytes);
    this.wakeup = this.newWakeup();
    this.timers.push(setInterval(() => this.guard(() => {
      this.heartbeat();
      this.poll(); // a backstop: everything is drained on wake-ups already
      table.sweep();
      this.collectAfterBurst(table);
      this.dropper?.sweep();
      this.writeStatus();
    }), 1000));
    this.writeStatus();
  }

  /**
   * A burst of new connections leaves the garbage-collected heap much larger than what it holds,
   * and the heap keeps that size while no new garbage comes. Once the burst is over (no new
   * connection for a second), one full collection hands much of it back (measured at 64,000
   * flows: 104 -> 86 MiB, in 9 ms; it never runs while connections are coming in), and asking
   * the engine to shrink its heap afterwards another 6-8 MiB (idle RSS 83-84 -> 76-79 MiB, side
   * by side; bun-types marks Bun.shrink deprecated, the pinned bun still has it).
   */
  private collectAfterBurst(table: FlowTable): void {
    const n = table.offloads;
    if (n === this.offloadsSeen && n - this.offloadsCollected >= COLLECT_AFTER) {
      table.releaseRecent();
      Bun.gc(true);
      Bun.shrink();
      this.offloadsCollected = n;
    }
    this.offloadsSeen = n;
  }

  /**
   * The dropper: the tracepoint program that reports the kernel's drops, the ruleset watch that
   * flushes what was learnt. Without them the forwarder runs on, and one line says why.
   */
  private startDropper(bytes: Uint8Array): void {
    const cfg = this.cfg;
    if (cfg.drop === "off" || !this.rtnl || !this.ct) return;
    const dropper = new Dropper({
      mode: cfg.drop, timeoutMs: cfg.dropTimeoutS * 1000, flows: this.obj.map("flows"), stats: this.obj.map("flow_stats"),
      firstSlot: cfg.maxFlows, rtnl: this.rtnl, ct: this.ct, log: this.log, devices: this.devices,
    });
    try {
      this.rulesetEvents = new RulesetEvents(() => this.dropper?.flush("the nftables ruleset changed"));
      this.dropObserver = DropObserver.start(bytes, cfg.drop === "learn", (ev) => this.dropper?.onEvent(ev));
    } catch (e) {
      this.rulesetEvents?.close();
      this.rulesetEvents = null;
      this.log.warn(`dropper off (${(e as Error).message.split("\n")[0]}): packets the kernel drops are not dropped at XDP; offloading works as usual`);
      return;
    }
    this.dropper = dropper;
    if (cfg.drop === "learn" && iptablesLegacyInUse()) {
      this.log.warn(`iptables-legacy tables are loaded: their rule changes are not announced, learnt drops follow them within ${cfg.dropTimeoutS * MAX_AGE_TIMEOUTS} s`);
    }
    this.log.info(`dropper on: ${cfg.drop === "learn" ? "blackhole routes and netfilter drops" : "blackhole routes"}, entries expire after ${cfg.dropTimeoutS} s without packets`);
  }

  private newWakeup(): Wakeup {
    const fds = [this.rb!.fd, this.events!.fd, this.routeEvents!.fd];
    if (this.dropObserver) fds.push(this.dropObserver.fd);
    if (this.rulesetEvents) fds.push(this.rulesetEvents.fd);
    return new Wakeup(fds, () => this.guard(() => this.poll()));
  }

  private poll(): void {
    // A flood's reports a batch at a time (each may offload a connection): timers and signals
    // must not wait for all of them.
    const more = (this.rb?.poll(0, REPORTS_PER_POLL) ?? 0) === REPORTS_PER_POLL;
    this.dropObserver?.poll();
    this.rulesetEvents?.drain();
    this.events?.drain();
    if (this.events?.overflowed) this.table?.resync();
    const settleIn = this.table?.settleNewFlows() ?? null;
    this.routeEvents?.drain();
    if (this.topologyChanged) {
      this.topologyChanged = false;
      this.rtnl?.refresh();
    }
    if (this.egressChanged) {
      this.egressChanged = false;
      this.applyEgressPolicy();
    }
    if (this.routeEvents?.overflowed) {
      this.rtnl?.clearCache();
      this.table?.revalidateAll();
    }
    // A flood of new flows or a route change making thousands stale: a batch now, the rest right after.
    if ((this.table?.revalidate() ?? false) || more || settleIn === 0) this.pollIn(0);
    else if (settleIn !== null) this.pollIn(settleIn);
  }

  /** One more poll() in `ms` (one timer at a time: an earlier one is kept). */
  private pollIn(ms: number): void {
    if (this.pollTimer !== null && ms >= this.pollTimerMs - performance.now()) return;
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimerMs = performance.now() + ms;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.guard(() => this.poll());
    }, ms);
  }

  /** Gives each attached device a zeroed slot of per-device counters and frees the other slots. */
  private placeIfaceStats(): void {
    const map = this.obj.map("iface_stats");
    const nCpus = map.valueSize / LAYOUT.iface_stats.size;
    const placed = placeIfaces(this.attachments.map((a) => a.ifindex));
    const owners = new Map([...placed].map(([ifindex, slot]) => [slot, ifindex]));
    for (let slot = 0; slot < IFACE_SLOTS; slot++) map.update(this.u32(slot), encodeIfaceSlot(owners.get(slot) ?? 0, nCpus));
    for (const a of this.attachments) {
      if (!placed.has(a.ifindex)) this.log.warn(`no per-device counters for ${a.ifname}: its slots are taken by other devices`);
    }
  }

  private u32(n: number): Uint8Array {
    const b = new Uint8Array(new ArrayBuffer(4));
    new DataView(b.buffer).setUint32(0, n, true);
    return b;
  }

  private writeStatus(): void {
    writeStatus(this.cfg.runDir, {
      pid: process.pid,
      version: VERSION,
      startedAt: this.startedAt,
      pinPath: this.pinPath,
      attachments: this.attachments.map((a) => ({ ifname: a.ifname, ifindex: a.ifindex, hook: a.hook })),
      maxFlows: this.cfg.maxFlows,
      connections: { offloaded: this.table?.size ?? 0, pending: this.table?.pendingCount ?? 0 },
      handedBack: this.table?.handedBack ?? {},
      dropper: this.dropper?.status() ?? { mode: this.dropObserver ? this.cfg.drop : "off", timeoutS: this.cfg.dropTimeoutS, entries: { netfilter: 0, blackhole: 0 }, packets: 0, flushes: 0 },
      lastErrors: this.log.recent,
      updatedAt: Date.now(),
    });
  }

  /** Tells the datapath the daemon is alive; without it the datapath passes everything. */
  private heartbeat(): void {
    this.obj.map("flow_config").update(new Uint8Array(new ArrayBuffer(4)), encodeConfig(monotonicNs()));
  }

  /** Keeps the daemon running through an unexpected error in one event, and says so. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.log.error((e as Error).message);
    }
  }

  /**
   * Decides which devices' flows must leave through the TC program (a shaper, no XDP transmit),
   * attaches TC beside XDP when some must, and tells the flow table.
   */
  private applyEgressPolicy(): void {
    // A deleted device has no flows left to send anywhere.
    const xdp = this.attachments.filter((a) => a.hook !== "tc" && ifIndexToName(a.ifindex) === a.ifname);
    if (!xdp.length || !this.rtnl || !this.table) return;
    const native = xdp.some((a) => a.hook === "xdp-native");
    const features = native ? this.xdpFeatures() : null;
    const qdiscs = this.rtnl.rootQdiscs();
    const tcOnly = new Map<number, string>();
    for (const a of xdp) {
      if (features && !features.has(a.ifindex)) continue; // gone since we looked
      const why = tcOnlyReason({ hook: a.hook, rootQdisc: qdiscs.get(a.ifindex) ?? null, xdpFeatures: features?.get(a.ifindex) ?? null }, native);
      if (why) tcOnly.set(a.ifindex, why);
    }
    for (const [ifindex, why] of tcOnly) {
      if (this.tcOnly.get(ifindex) !== why) this.log.info(`flows leaving by ${this.table.deviceName(ifindex)} take the TC path: ${why}`);
    }
    if (tcOnly.size && !this.attachments.some((a) => a.hook === "tc")) {
      // The TC program forwards what XDP leaves to it; it must see every ingress device.
      for (const a of xdp) {
        const p = this.programsFor(a.ifindex);
        this.attachments.push(attach(p.xdp, p.tc, a.ifname, "tc"));
        this.log.info(`attached to ${a.ifname} (tc, beside ${a.hook})`);
      }
    }
    const changed = tcOnly.size !== this.tcOnly.size || [...tcOnly.keys()].some((i) => !this.tcOnly.has(i));
    this.tcOnly = tcOnly;
    if (changed) this.table.setTcOnly(new Set(tcOnly.keys()));
  }

  /** XDP feature bits by ifindex; null when the kernel can't tell (then TC is the safe path). */
  private xdpFeatures(): Map<number, number> | null {
    try {
      return queryXdpFeatures();
    } catch (e) {
      this.log.warn(`cannot read XDP features: ${(e as Error).message}`);
      return null;
    }
  }

  /**
   * The lowest devices beneath the named ones (a bridge's ports, the Ethernet device under a VLAN
   * or PPPoE device, DSA user ports or with --dsa their conduit), or beneath every routed
   * interface when none is named.
   */
  private lowerDevices(rtnl: Rtnl): LowerDevice[] {
    const named = this.cfg.interfaces;
    const found = rtnl.lowerDevices(named.length ? named : "all", {
      skip: (ifname, reason) => this.log.info(`not attaching to ${ifname}: ${reason}`),
    });
    if (!found.length) throw new DaemonError(named.length ? `no device to attach to beneath ${named.join(", ")}` : "no routed interface found to attach to; name the interfaces");
    for (const d of found) if (!named.includes(d.ifname)) this.log.info(`attaching to ${d.ifname}: ${d.reason}`);
    return found;
  }

  private attachAll(devices: readonly LowerDevice[]): Attachment[] {
    const done: Attachment[] = [];
    const attachOne = (d: LowerDevice, hook: Hook) => {
      const p = this.programsFor(d.ifindex);
      done.push(attach(p.xdp, p.tc, d.ifname, hook));
    };
    const attachEach = (hook: Hook) => {
      for (const d of devices) attachOne(d, hook);
    };
    try {
      switch (this.cfg.hook) {
        case "xdp":
          // Native where the driver has it, generic elsewhere.
          for (const d of devices) {
            try {
              attachOne(d, "xdp-native");
            } catch (e) {
              this.log.warn(`${(e as Error).message}; using xdp-generic on ${d.ifname}`);
              attachOne(d, "xdp-generic");
            }
          }
          return done;
        case "auto":
          // Native XDP on every device, or else TC everywhere: TC works on any device and keeps
          // the egress qdisc, where generic XDP is slower than TC.
          try {
            attachEach("xdp-native");
            return done;
          } catch (e) {
            // Someone else's XDP program is not ours to work around: say so and stop.
            if (e instanceof AttachError && e.errno === EBUSY) throw e;
            for (const a of done.splice(0)) a.detach();
            this.log.info(`${(e as Error).message}; using tc on all devices`);
            attachEach("tc");
            return done;
          }
        default: {
          attachEach(this.cfg.hook);
          return done;
        }
      }
    } catch (e) {
      for (const a of done) a.detach();
      throw e;
    }
  }

  /** The devices the datapath is attached to. */
  deviceNames(): string[] {
    return [...new Set(this.attachments.map((a) => a.ifname))];
  }

  /** The offloaded connections, one line each. */
  describe(): string[] {
    return [...(this.table?.describe() ?? []), ...(this.dropper?.describe() ?? [])];
  }

  /** Detaches first (traffic falls back to the kernel at once), then releases everything. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.pollTimer !== null) clearTimeout(this.pollTimer);
    this.pollTimer = null;
    this.wakeup?.close();
    this.wakeup = null;
    for (const a of this.attachments.splice(0)) {
      a.detach();
      this.log.info(`detached from ${a.ifname}`);
    }
    this.dropObserver?.close();
    this.rulesetEvents?.close();
    this.dropObserver = this.rulesetEvents = this.dropper = null;
    this.rb?.close();
    this.events?.close();
    this.routeEvents?.close();
    this.ct?.close();
    this.rtnl?.close();
    for (const inst of this.instances.values()) inst.close();
    this.instances.clear();
    this.obj.close();
    this.rb = this.events = this.ct = this.rtnl = this.routeEvents = null;
    if (this.pinPath) removePins(this.pinPath);
    if (this.pinLock !== null) closeSync(this.pinLock);
    removeStatus(this.cfg.runDir);
  }
}
