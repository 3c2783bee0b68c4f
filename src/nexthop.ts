// Resolves where the kernel would forward a flow's packets: routed device, next hop MAC, the
// lowest device beneath with its encapsulation (bridge port, VLAN, PPPoE, DSA), source MAC and
// MTU, through synchronous rtnetlink requests on one libmnl socket. The device stack comes from a
// cached snapshot (src/topology.ts): refresh() it on link events.
//
// The socket is non-blocking: rtnetlink answers a GET within the sendto() call, so the reply is
// already queued when recvfrom() runs, and a missing reply becomes an error, never a stall.
import { ptr, type Pointer } from "bun:ffi";
import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { describeErrno, errno } from "../ffi/libc.ts";
import {
  libmnl, MNL_SOCKET_AUTOPID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK, NETLINK_ROUTE,
  SOCK_CLOEXEC, SOCK_NONBLOCK,
} from "../ffi/mnl.ts";
import { AF_INET, AF_INET6 } from "./abi.ts";
import { formatAddr } from "./addr.ts";
import {
  AF_BRIDGE, ARPHRD_ETHER, ARPHRD_PPP, buildAddrDump, buildFdbGet, buildLinkDump, buildLinkGet, buildQdiscDump, parseQdisc, TC_H_ROOT, buildNeighGet,
  buildNetconfGet, buildRouteDump, buildRouteGet, buildRuleDump, findReply, NETCONFA_IFINDEX_ALL, nudName, NUD_DELAY, NUD_NOARP,
  NUD_PERMANENT, NUD_PROBE, NUD_REACHABLE, NUD_STALE, parseAddr, parseBridgeLink, parseFdb, parseLink, parseNeigh,
  parseNetconfForwarding, parseRoute, parseRouteOifs, routeTypeName, RT_SCOPE_LINK, RTEXT_FILTER_BRVLAN,
  RTEXT_FILTER_SKIP_STATS, RTN_UNICAST, ruleMatchesL4, scanDump,
  type BridgeVlan, type ErrorReply, type FdbReply, type LinkInfo, type MessageRef, type NeighReply, type RouteQuery, type RouteReply,
} from "./netlink.ts";
import { parseProcPppoe, pppdDevices, type PppoeSession } from "./pppoe.ts";
import { LookupCache } from "./rtcache.ts";
import type { RouteEvent } from "./rtevents.ts";
import { Topology, type EgressResult, type Encap, type LowerDevice, type TopologyOptions } from "./topology.ts";

export type { LinkInfo, RouteQuery, VlanTag } from "./netlink.ts";
export { noEncap, TopologyError, type Encap, type LowerDevice, type TopologyOptions } from "./topology.ts";

export interface NextHop {
  /** The lowest egress device (bridge port, VLAN real device, DSA port or conduit): where to redirect. */
  oif: number;
  /** The routed egress device (RTA_OIF): br-lan, pppoe-wan, eth0.7 ... (equals oif for plain Ethernet). */
  l3Oif: number;
  /** What to put around the packet on `oif`. */
  encap: Encap;
  /** The route's gateway (16 bytes, IPv4 in the first four), null for a connected destination. */
  gateway: Uint8Array | null;
  /** Family of `gateway`; AF_INET6 for an IPv4 route via an IPv6 next hop (RFC 5549). */
  gatewayFamily: number;
  /** The neighbour's MAC, or the PPPoE peer's. */
  dmac: Uint8Array;
  /** MAC of the device that builds the Ethernet header: the L3 (or VLAN) device, or the PPPoE device. */
  smac: Uint8Array;
  /** The L3 egress device's MTU (1492 on PPPoE), or the route's MTU when that is lower. */
  mtu: number;
}

export interface RtnlOptions extends TopologyOptions {
  /** Where /proc lives (tests). */
  procRoot?: string;
  /** Where /sys lives (tests). */
  sysRoot?: string;
}

/** retry: the flow may become offloadable soon without any configuration change. */
export type Resolution = { ok: true; hop: NextHop } | { ok: false; reason: string; retry: boolean };

/** A netlink call that failed: the socket, or the kernel refusing a request. */
export class NetlinkError extends Error {
  constructor(op: string, readonly errno: number, extack: string | null = null) {
    super(`netlink ${op}: ${describeErrno(errno)}${extack ? `: ${extack}` : ""}`);
    this.name = "NetlinkError";
  }
}

const E = constants.errno;
/** At most one automatic refresh per this many ms when a device is missing from the snapshot. */
const AUTO_REFRESH_MS = 1000;
const USABLE_NUD = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT;
const TX_SIZE = 4096;
const RX_SIZE = 65536;

const fail = (reason: string, retry = false): Resolution => ({ ok: false, reason, retry });

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** IPv6 sources ip6_forward() drops unless the packet leaves through the interface it came in on. */
function ipv6SourceConfined(src: Uint8Array): boolean {
  const b0 = src[0]!;
  if (b0 === 0xff || (b0 === 0xfe && (src[1]! & 0xc0) === 0x80)) return true; // multicast, link-local
  for (let i = 0; i < 15; i++) if (src[i] !== 0) return false;
  return src[15]! <= 1; // :: or ::1
}

export class Rtnl {
  private sock: Pointer | null;
  private readonly tx = new Uint8Array(new ArrayBuffer(TX_SIZE));
  private readonly rx = new Uint8Array(new ArrayBuffer(RX_SIZE));
  private readonly txPtr = ptr(this.tx);
  private readonly rxPtr = ptr(this.rx);
  private seq = 0;
  private readonly topo: Topology;
  private loadedAt = -Infinity;
  /** Route, neighbour, link, FDB and netconf answers until an event invalidates them. */
  private readonly cache = new LookupCache();

  constructor(private readonly options: RtnlOptions = {}) {
    this.topo = new Topology(options);
    const sock = libmnl.symbols.mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC) as Pointer | null;
    if (sock === null) throw new NetlinkError("socket", errno());
    this.sock = sock;
    try {
      // Error replies without the echoed request, with the kernel's explanation, strict checks.
      new Int32Array(this.tx.buffer, 0, 1)[0] = 1; // the option value, an int in host byte order
      for (const opt of [NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK]) {
        if (libmnl.symbols.mnl_socket_setsockopt(sock, opt, this.txPtr, 4) < 0) {
          throw new NetlinkError(`setsockopt(${opt})`, errno());
        }
      }
      if (libmnl.symbols.mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) throw new NetlinkError("bind", errno());
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    if (this.sock !== null) libmnl.symbols.mnl_socket_close(this.sock);
    this.sock = null;
  }

  /** Where the kernel would forward the packets of `q`, or why the flow is not offloaded. */
  resolve(q: RouteQuery): Resolution {
    if (q.family === AF_INET6 && !this.forwarding(AF_INET6, NETCONFA_IFINDEX_ALL)) {
      return fail("IPv6 forwarding is disabled (net.ipv6.conf.all.forwarding=0)");
    }
    const route = this.route(q);
    if ("errno" in route) return this.routeFailure(q, route);
    if (route.type !== RTN_UNICAST) return fail(`${routeTypeName(route.type)} route`);
    if (route.multipath) return fail("multipath route (not offloaded in v1)");
    if (route.encap) return fail("route with lightweight tunnel encapsulation");
    if (route.oif === 0) {
      return fail(route.nhid ? `route via nexthop object ${route.nhid} without net.ipv4.nexthop_compat_mode` : "route without output interface");
    }
    if (q.family === AF_INET6 && route.oif !== q.iif && ipv6SourceConfined(q.src)) {
      return fail(`IPv6 source ${formatAddr(q.family, q.src)} is not forwarded to another interface`);
    }

    // The device stack comes from the snapshot; each device's state is read afresh (carrier and
    // MTU change without the stack changing).
    let link = this.cachedLink(route.oif);
    if (link !== null) link = this.liveLink(link);
    if (link === null) return fail(`egress interface ${route.oif} not found`);
    if (link.type !== ARPHRD_ETHER && link.type !== ARPHRD_PPP) {
      return fail(`egress interface ${link.name} is not Ethernet (ARPHRD ${link.type})`);
    }
    if (!link.up) return fail(`egress interface ${link.name} is down`);

    const nhFamily = route.gateway ? route.gatewayFamily : q.family;
    let dmac: Uint8Array | null = null;
    if (link.type === ARPHRD_ETHER) {
      const nhAddr = route.gateway ?? q.dst;
      const nh = `${formatAddr(nhFamily, nhAddr)} on ${link.name}`;
      const neigh = this.neigh(nhFamily, route.oif, nhAddr, nh);
      if (neigh === null) return fail(`no neighbour entry for ${nh}`, true);
      if (neigh.state & NUD_NOARP) return fail(`neighbour ${nh} is NOARP`);
      if (!(neigh.state & USABLE_NUD)) return fail(`neighbour ${nh} is ${nudName(neigh.state)}`, true);
      if (neigh.lladdr?.length !== 6) return fail(`neighbour ${nh} has no Ethernet address`);
      dmac = neigh.lladdr;
    }
    const fdb = (br: LinkInfo, mac: Uint8Array, vid: number) => this.fdbGet(br, mac, vid);
    const live = (l: LinkInfo) => this.liveLink(l);
    let down = this.topo.egress(link, dmac, fdb, live);
    if (!down.ok && down.stale && this.autoRefresh()) {
      link = this.topo.link(route.oif);
      if (link === null) return fail(`egress interface ${route.oif} not found`);
      down = this.topo.egress(link, dmac, fdb, live);
    }
    if (!down.ok) return fail(down.reason, down.retry);
    const p = down.path;
    return {
      ok: true,
      hop: {
        oif: p.oif, l3Oif: route.oif, encap: p.encap, gateway: route.gateway, gatewayFamily: nhFamily,
        dmac: p.dmac, smac: p.smac, mtu: route.mtu > 0 ? Math.min(route.mtu, link.mtu) : link.mtu,
      },
    };
  }

  /**
   * The device the kernel routes a packet from (the RTA_IIF of its route lookup), given the lowest
   * device it arrived on and the encapsulation the datapath saw; null when the kernel would not
   * deliver it to any L3 device. VLAN protocol 0 matches either 802.1Q or 802.1ad.
   */
  ingressDevice(lowest: number, encap: Encap): number | null {
    this.ensureLoaded();
    const l3 = this.topo.ingressDevice(lowest, encap);
    if (l3 !== null || !this.autoRefresh()) return l3;
    return this.topo.ingressDevice(lowest, encap);
  }

  /**
   * Where frames sent by `mac` to the L3 device `l3` arrive: the lowest device beneath and the
   * encapsulation they carry there (the bridge port whose FDB holds the MAC, VLAN tags, the
   * PPPoE session). The way down is the one the device's own frames take to that MAC.
   */
  ingressPath(l3: number, mac: Uint8Array): EgressResult {
    const cached = this.cachedLink(l3);
    const link = cached && this.liveLink(cached);
    if (!link) return { ok: false, reason: `interface ${l3} not found`, retry: false };
    return this.topo.egress(link, mac, (br, m, vid) => this.fdbGet(br, m, vid), (l) => this.liveLink(l));
  }

  /**
   * True when the kernel's input route lookup for `q` fails with EINVAL: the packet is dropped
   * silently at routing (a blackhole route; unreachable and prohibit routes fail otherwise, and
   * their ICMP must be sent by the stack).
   */
  silentlyDropped(q: RouteQuery): boolean {
    const reply = this.request("route lookup", (buf, seq) => buildRouteGet(buf, seq, q));
    return "errno" in reply && reply.errno === E.EINVAL;
  }

  /**
   * The lowest devices to attach to beneath the named devices, or beneath every interface with a
   * routable address or a route for "all" (loopback and administratively down ones left out).
   * Throws TopologyError for a named device that does not exist or cannot be resolved.
   */
  lowerDevices(names: readonly string[] | "all", opts: { dsa?: boolean; skip?: (ifname: string, reason: string) => void } = {}): LowerDevice[] {
    this.refresh();
    const l3 = names === "all" ? this.l3Interfaces() : undefined;
    return this.topo.lowerDevices(names, { ...opts, l3 });
  }

  /** The DSA tagging protocol ("mtk", "qca", "dsa", ...) of a conduit, null when it is none. */
  dsaTagger(conduit: number): string | null {
    this.ensureLoaded();
    return this.topo.dsaTagger(conduit);
  }

  /** The cached device stack; refresh() reloads it. */
  get topology(): Topology {
    this.ensureLoaded();
    return this.topo;
  }

  /**
   * Reloads the device snapshot: every link (one RTM_GETLINK dump), the bridges' VLAN tables
   * (an AF_BRIDGE dump) and the PPPoE sessions (/proc/net/pppoe). Call it on link events.
   */
  refresh(): void {
    const links: LinkInfo[] = [];
    const vlans: [number, BridgeVlan[]][] = [];
    this.dump("link dump", (buf, seq) => buildLinkDump(buf, seq, 0, RTEXT_FILTER_SKIP_STATS), (m) => {
      links.push(parseLink(this.rx, m));
    }, () => (links.length = 0));
    if (links.some((l) => l.bridge?.vlanFiltering)) {
      this.dump("bridge VLAN dump", (buf, seq) => buildLinkDump(buf, seq, AF_BRIDGE, RTEXT_FILTER_BRVLAN), (m) => {
        const b = parseBridgeLink(this.rx, m);
        vlans.push([b.ifindex, b.vlans ?? []]); // no IFLA_AF_SPEC: no VLANs
      }, () => (vlans.length = 0));
    }
    for (const l of links) {
      if (l.kind === "dsa" && l.portName === null) l.portName = this.readSys(`class/net/${l.name}/phys_port_name`);
    }
    const sessions = this.readPppoe();
    const pppd = links.some((l) => l.type === ARPHRD_PPP) && sessions.length ? this.readPppd(sessions) : new Map<string, string>();
    this.topo.load(links, vlans, sessions, pppd);
    const taggers = new Map<number, string>();
    for (const conduit of this.topo.dsaConduits()) {
      const name = this.topo.link(conduit)?.name;
      const tagger = name === undefined ? null : this.readSys(`class/net/${name}/dsa/tagging`);
      if (tagger !== null) taggers.set(conduit, tagger);
    }
    this.topo.setDsaTaggers(taggers);
    this.loadedAt = performance.now();
  }

  /** Rereads /proc/net/pppoe only (PPPoE sessions come and go without link events of their own). */
  refreshPppoe(): void {
    const sessions = this.readPppoe();
    this.topo.setPppoe(sessions, sessions.length ? this.readPppd(sessions) : new Map());
  }

  /**
   * The interface with this index as the kernel has it now (or as of the last link event), null
   * when there is none. Callers must not modify it: it is shared through the cache.
   */
  link(ifindex: number): LinkInfo | null {
    const hit = this.cache.link(ifindex);
    if (hit !== undefined) return hit;
    const reply = this.request("link lookup", (buf, seq) => buildLinkGet(buf, seq, ifindex));
    if ("errno" in reply && reply.errno !== E.ENODEV) throw new NetlinkError(`link lookup of ifindex ${ifindex}`, reply.errno, reply.extack);
    const l = "errno" in reply ? null : parseLink(this.rx, reply);
    this.cache.setLink(ifindex, l);
    return l;
  }

  /** The neighbour entry of addr on ifindex, null when there is none (`what` names it in errors). */
  private neigh(family: number, ifindex: number, addr: Uint8Array, what: string): NeighReply | null {
    const hit = this.cache.neigh(family, ifindex, addr);
    if (hit !== undefined) return hit;
    const n = this.request("neighbour lookup", (buf, seq) => buildNeighGet(buf, seq, family, ifindex, addr));
    if ("errno" in n && n.errno !== E.ENOENT) throw new NetlinkError(`neighbour lookup of ${what}`, n.errno, n.extack);
    const neigh = "errno" in n ? null : parseNeigh(this.rx, n);
    this.cache.setNeigh(family, ifindex, addr, neigh);
    return neigh;
  }

  /** Forgets the cached answers the event may have changed; call it before acting on the event. */
  invalidate(e: RouteEvent): void {
    this.cache.invalidate(e);
  }

  /** rtnetlink events were lost: forget every cached answer. */
  clearCache(): void {
    this.cache.clear();
  }

  private forwarding(family: number, ifindex: number): boolean {
    const hit = this.cache.forwarding(family, ifindex);
    if (hit !== undefined) return hit;
    const reply = this.request("netconf lookup", (buf, seq) => buildNetconfGet(buf, seq, family, ifindex));
    if ("errno" in reply) throw new NetlinkError(`netconf lookup of ifindex ${ifindex}`, reply.errno, reply.extack);
    const on = parseNetconfForwarding(this.rx, reply) !== 0;
    this.cache.setForwarding(family, ifindex, on);
    return on;
  }

  /** The input route lookup's answer for q, from the cache when no event has changed it since. */
  private route(q: RouteQuery): RouteReply | ErrorReply {
    this.cache.l4Rules ??= this.l4Rules(q.family);
    const hit = this.cache.route(q);
    if (hit !== undefined) return hit;
    const reply = this.request("route lookup", (buf, seq) => buildRouteGet(buf, seq, q));
    const answer = "errno" in reply ? reply : parseRoute(this.rx, reply);
    this.cache.setRoute(q, answer);
    return answer;
  }

  /** Whether some policy routing rule of either family selects on protocol or ports. */
  private l4Rules(family: number): boolean {
    let found = false;
    for (const f of family === AF_INET ? [AF_INET, AF_INET6] : [AF_INET6, AF_INET]) {
      this.dump("rule dump", (buf, seq) => buildRuleDump(buf, seq, f), (m) => {
        if (ruleMatchesL4(this.rx, m)) found = true;
      }, () => (found = false));
    }
    return found;
  }

  private ensureLoaded(): void {
    if (this.loadedAt === -Infinity) this.refresh();
  }

  /** Refreshes the snapshot unless that happened within AUTO_REFRESH_MS; true when it did. */
  private autoRefresh(): boolean {
    if (performance.now() - this.loadedAt < AUTO_REFRESH_MS) return false;
    this.refresh();
    return true;
  }

  private cachedLink(ifindex: number): LinkInfo | null {
    this.ensureLoaded();
    const l = this.topo.link(ifindex);
    if (l !== null || !this.autoRefresh()) return l;
    return this.topo.link(ifindex);
  }

  /** The device as the kernel has it now (or as of the last link event), also updated in the snapshot; null when gone. */
  private liveLink(l: LinkInfo): LinkInfo | null {
    const now = this.link(l.ifindex);
    if (now === null || now === l) return now;
    now.portName ??= l.portName; // from sysfs when the message lacks it
    this.topo.updateLink(now);
    return now;
  }

  /** The bridge FDB entry for `mac` in `vid`, null when there is none. */
  private fdbGet(br: LinkInfo, mac: Uint8Array, vid: number): FdbReply | null {
    const hit = this.cache.fdb(br.ifindex, mac, vid);
    if (hit !== undefined) return hit;
    const r = this.request("bridge FDB lookup", (buf, seq) => buildFdbGet(buf, seq, br.ifindex, mac, vid));
    if ("errno" in r && r.errno !== E.ENOENT) throw new NetlinkError(`bridge FDB lookup on ${br.name}`, r.errno, r.extack);
    const f = "errno" in r ? null : parseFdb(this.rx, r);
    this.cache.setFdb(br.ifindex, mac, vid, f);
    return f;
  }

  /** ifindexes with a routable address, or used by a unicast route (IPv6 link-local routes aside). */
  private l3Interfaces(): Set<number> {
    const out = new Set<number>();
    for (const family of [AF_INET, AF_INET6]) {
      this.dump("address dump", (buf, seq) => buildAddrDump(buf, seq, family), (m) => {
        const a = parseAddr(this.rx, m);
        if (a.scope < RT_SCOPE_LINK) out.add(a.ifindex);
      });
      this.dump("route dump", (buf, seq) => buildRouteDump(buf, seq, family), (m) => {
        const r = parseRouteOifs(this.rx, m);
        const linkLocal = r.family === AF_INET6 && r.dst !== null && r.dst[0] === 0xfe && (r.dst[1]! & 0xc0) === 0x80;
        if (r.type === RTN_UNICAST && r.table !== 255 && !linkLocal) for (const oif of r.oifs) out.add(oif);
      });
    }
    return out;
  }

  private readPppoe(): PppoeSession[] {
    const text = this.readProc("net/pppoe");
    return text === null ? [] : parseProcPppoe(text);
  }

  /** PPP interface -> PPPoE device, from the command lines of running pppd processes. */
  private readPppd(sessions: PppoeSession[]): Map<string, string> {
    const root = this.options.procRoot ?? "/proc";
    const cmdlines: string[][] = [];
    let pids: string[];
    try {
      pids = readdirSync(root).filter((d) => /^\d+$/.test(d));
    } catch {
      return new Map();
    }
    for (const pid of pids) {
      const raw = this.readProc(`${pid}/cmdline`);
      if (raw?.includes("pppd")) cmdlines.push(raw.split("\0").filter((a) => a !== ""));
    }
    return pppdDevices(cmdlines, new Set(sessions.map((s) => s.device)));
  }

  private readProc(path: string): string | null {
    return readText(`${this.options.procRoot ?? "/proc"}/${path}`);
  }

  private readSys(path: string): string | null {
    return readText(`${this.options.sysRoot ?? "/sys"}/${path}`)?.trim() || null;
  }

  /** The kind of every device's root qdisc ("noqueue", "fq_codel", "cake", ...), by ifindex. */
  rootQdiscs(): Map<number, string> {
    const roots = new Map<number, string>();
    this.dump("qdisc dump", (buf, seq) => buildQdiscDump(buf, seq), (m) => {
      const q = parseQdisc(this.rx, m);
      if (q.parent === TC_H_ROOT) roots.set(q.ifindex, q.kind);
    }, () => roots.clear());
    return roots;
  }

  /** Runs a dump, restarting it (after `reset`) while the kernel reports it inconsistent. */
  private dump(op: string, build: (buf: Uint8Array, seq: number) => number, onMessage: (m: MessageRef) => void, reset = () => {}): void {
    for (let attempt = 0; !this.dumpOnce(op, build, onMessage); attempt++) {
      if (attempt === 4) throw new NetlinkError(`${op} (kept changing while dumped)`, E.EAGAIN);
      reset();
    }
  }

  /** One dump; false when the kernel flagged it inconsistent. */
  private dumpOnce(op: string, build: (buf: Uint8Array, seq: number) => number, onMessage: (m: MessageRef) => void): boolean {
    if (this.sock === null) throw new Error("netlink socket used after close()");
    const seq = ++this.seq;
    const len = build(this.tx, seq);
    if (libmnl.symbols.mnl_socket_sendto(this.sock, this.txPtr, len) < 0) throw new NetlinkError(`${op} send`, errno());
    let consistent = true;
    for (;;) {
      const n = libmnl.symbols.mnl_socket_recvfrom(this.sock, this.rxPtr, RX_SIZE);
      if (n < 0) throw new NetlinkError(`${op} receive`, errno());
      const status = scanDump(this.rx, Number(n), seq, onMessage);
      if ("errno" in status) throw new NetlinkError(op, status.errno, status.extack);
      if (status.interrupted) consistent = false;
      if (status.done) return consistent;
    }
  }

  /** The kernel refused the input route lookup: say why in an administrator's words. */
  private routeFailure(q: RouteQuery, r: ErrorReply): Resolution {
    switch (r.errno) {
      case E.ENETUNREACH:
        return fail("no route");
      case E.EHOSTUNREACH:
        if (q.family === AF_INET && !this.forwarding(AF_INET, q.iif)) {
          return fail(`IPv4 forwarding is disabled on ingress interface ${this.link(q.iif)?.name ?? q.iif}`);
        }
        return fail("unreachable route");
      case E.EACCES:
        return fail("prohibit route");
      case E.EINVAL:
        return fail("input route lookup refused: blackhole route, martian address or rp_filter");
      case E.ENODEV:
        return fail(`ingress interface ${q.iif} not found`);
      default:
        return fail(`route lookup failed: ${describeErrno(r.errno)}${r.extack ? `: ${r.extack}` : ""}`);
    }
  }

  /** Sends the request `build` writes and returns the reply to it, left in rx. */
  private request(op: string, build: (buf: Uint8Array, seq: number) => number): MessageRef | ErrorReply {
    if (this.sock === null) throw new Error("netlink socket used after close()");
    const seq = ++this.seq;
    const len = build(this.tx, seq);
    if (libmnl.symbols.mnl_socket_sendto(this.sock, this.txPtr, len) < 0) throw new NetlinkError(`${op} send`, errno());
    for (;;) {
      const n = libmnl.symbols.mnl_socket_recvfrom(this.sock, this.rxPtr, RX_SIZE);
      if (n < 0) throw new NetlinkError(`${op} receive`, errno());
      const reply = findReply(this.rx, Number(n), seq);
      if (reply !== null) return reply;
    }
  }
}
