// The offloader daemon: loads the datapath, attaches it, and wires datapath events, conntrack
// events and the once-a-second sweep into the flow table.
import objectPath from "../build/offload.bpf.o" with { type: "file" };
import { FLOW_EV_CLOSING, FLOW_EV_NEW, decodeEvent, encodeConfig, encodeParams } from "./abi.ts";
import { type Attachment, type Hook, attach } from "./attach.ts";
import { BpfObject, RingBuffer } from "./bpf.ts";
import { Conntrack, ConntrackEvents } from "./conntrack.ts";
import { FlowTable } from "./flows.ts";
import type { Logger } from "./log.ts";
import { Rtnl } from "./nexthop.ts";
import { RouteEvents } from "./rtevents.ts";
import { monotonicNs } from "../ffi/libc.ts";
import { NF_NETLINK_CONNTRACK_DESTROY, NF_NETLINK_CONNTRACK_NEW, NF_NETLINK_CONNTRACK_UPDATE } from "../ffi/conntrack.ts";

export type HookChoice = Hook | "auto" | "xdp";

export interface DaemonConfig {
  interfaces: string[];
  hook: HookChoice;
  maxFlows: number;
  tcpTimeoutS: number;
  udpTimeoutS: number;
  heartbeatTimeoutS: number;
}

/** How often datapath and conntrack events are drained. */
const POLL_MS = 10;
/** At most one new-flow event per unknown flow per this interval. */
const NOTIFY_INTERVAL_NS = 500_000_000n;

export class Daemon {
  private readonly obj: BpfObject;
  private readonly attachments: Attachment[] = [];
  private rtnl: Rtnl | null = null;
  private ct: Conntrack | null = null;
  private events: ConntrackEvents | null = null;
  private rb: RingBuffer | null = null;
  private routeEvents: RouteEvents | null = null;
  private table: FlowTable | null = null;
  private timers: ReturnType<typeof setInterval>[] = [];

  private constructor(
    private readonly cfg: DaemonConfig,
    private readonly log: Logger,
    bytes: Uint8Array,
  ) {
    this.obj = BpfObject.open(bytes, {
      maxEntries: { flows: cfg.maxFlows, flow_stats: cfg.maxFlows },
      params: encodeParams({
        heartbeatTimeoutNs: BigInt(cfg.heartbeatTimeoutS) * 1_000_000_000n,
        notifyIntervalNs: NOTIFY_INTERVAL_NS,
      }),
    });
  }

  /** Loads, attaches and starts; on failure nothing stays attached. */
  static async start(cfg: DaemonConfig, log: Logger): Promise<Daemon> {
    const d = new Daemon(cfg, log, await Bun.file(objectPath).bytes());
    try {
      d.startInner();
      return d;
    } catch (e) {
      d.stop();
      throw e;
    }
  }

  private startInner(): void {
    this.obj.load();
    this.heartbeat();
    const cfg = this.cfg;
    this.rtnl = new Rtnl();
    this.ct = new Conntrack();
    const devices = new Map<number, string>();
    for (const a of this.attachAll()) {
      this.attachments.push(a);
      devices.set(a.ifindex, a.ifname);
      this.log.info(`attached to ${a.ifname} (${a.hook})`);
    }
    const table = new FlowTable({
      flows: this.obj.map("flows"),
      stats: this.obj.map("flow_stats"),
      ct: this.ct,
      rtnl: this.rtnl,
      log: this.log,
      devices,
      maxFlows: cfg.maxFlows,
      tcpTimeoutMs: cfg.tcpTimeoutS * 1000,
      udpTimeoutMs: cfg.udpTimeoutS * 1000,
    });
    this.table = table;
    this.events = new ConntrackEvents(
      NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY,
      (type, entry) => (type === "destroy" ? table.onConntrackDestroy(entry) : table.onConntrackChange(entry)),
    );
    this.routeEvents = new RouteEvents((e) => table.onRouteEvent(e));
    this.rb = new RingBuffer(this.obj.map("flow_events"), (sample) => {
      const ev = decodeEvent(sample);
      if (ev.type === FLOW_EV_NEW) table.onNewFlow(ev.key);
      else if (ev.type === FLOW_EV_CLOSING) table.onClosing(ev.connId);
    });
    this.timers.push(setInterval(() => this.guard(() => this.poll()), POLL_MS));
    this.timers.push(setInterval(() => this.guard(() => {
      this.heartbeat();
      table.sweep();
    }), 1000));
  }

  private poll(): void {
    this.rb?.poll(0);
    this.events?.drain();
    if (this.events?.overflowed) this.table?.resync();
    this.routeEvents?.drain();
    if (this.routeEvents?.overflowed) this.table?.revalidateAll();
    this.table?.revalidate();
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

  private attachAll(): Attachment[] {
    const xdp = this.obj.programFd("offload_xdp");
    const tc = this.obj.programFd("offload_tc");
    const done: Attachment[] = [];
    const attachEach = (hookFor: (ifname: string) => Hook) => {
      for (const ifname of this.cfg.interfaces) done.push(attach(xdp, tc, ifname, hookFor(ifname)));
    };
    try {
      switch (this.cfg.hook) {
        case "xdp":
          // Native where the driver has it, generic elsewhere.
          for (const ifname of this.cfg.interfaces) {
            try {
              done.push(attach(xdp, tc, ifname, "xdp-native"));
            } catch (e) {
              this.log.warn(`${(e as Error).message}; using xdp-generic on ${ifname}`);
              done.push(attach(xdp, tc, ifname, "xdp-generic"));
            }
          }
          return done;
        case "auto":
          // Native XDP on every device, or else TC everywhere: TC works on any device and keeps
          // the egress qdisc, where generic XDP is slower than TC.
          try {
            attachEach(() => "xdp-native");
            return done;
          } catch (e) {
            for (const a of done.splice(0)) a.detach();
            this.log.info(`${(e as Error).message}; using tc on all devices`);
            attachEach(() => "tc");
            return done;
          }
        default: {
          const hook = this.cfg.hook;
          attachEach(() => hook);
          return done;
        }
      }
    } catch (e) {
      for (const a of done) a.detach();
      throw e;
    }
  }

  /** The offloaded connections, one line each. */
  describe(): string[] {
    return this.table?.describe() ?? [];
  }

  /** Detaches first (traffic falls back to the kernel at once), then releases everything. */
  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const a of this.attachments.splice(0)) {
      a.detach();
      this.log.info(`detached from ${a.ifname}`);
    }
    this.rb?.close();
    this.events?.close();
    this.routeEvents?.close();
    this.ct?.close();
    this.rtnl?.close();
    this.obj.close();
    this.rb = this.events = this.ct = this.rtnl = this.routeEvents = null;
  }
}
