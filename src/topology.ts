// The device stack between routing and the wire, as OpenWrt routers build it: a bridge over
// Ethernet or DSA user ports on the LAN side, PPPoE over a VLAN over a DSA port or Ethernet on the
// WAN side. Pure: it works on a snapshot of the links (RTM_NEWLINK messages), the bridges' VLAN
// tables (AF_BRIDGE RTM_NEWLINK) and the PPPoE sessions (/proc/net/pppoe); the one live lookup it
// needs, the bridge FDB, is a callback. src/nexthop.ts loads the snapshot and does the I/O.
//
// Egress walks down from the routed (L3) device to the lowest device, collecting what the kernel
// would put around the packet; ingress walks up from the lowest device and the encapsulation the
// datapath saw to the device the kernel would route the packet from.
import {
  AF_BRIDGE, ARPHRD_ETHER, ARPHRD_PPP, BR_STATE_FORWARDING, brStateName, linkFamily, linkIndex, NUD_PERMANENT,
  parseBridgeLink, parseLink, RTM_DELLINK, RTM_NEWLINK,
  type BridgeVlan, type FdbReply, type LinkInfo, type MessageRef, type VlanTag,
} from "./netlink.ts";
import type { PppoeSession } from "./pppoe.ts";

/** What surrounds a packet on the lowest device, outermost first. */
export interface Encap {
  /** VLAN tags, outer first (QinQ: the 802.1ad S-tag, then the C-tag); at most two. */
  vlans: VlanTag[];
  /** PPPoE session id as in the header, null when not PPPoE. */
  pppoeSid: number | null;
  /** DSA port index behind the conduit (only when resolving to DSA conduits), null otherwise. */
  dsaPort: number | null;
}

/** No encapsulation: plain Ethernet on the lowest device. */
export function noEncap(): Encap {
  return { vlans: [], pppoeSid: null, dsaPort: null };
}

export interface TopologyOptions {
  /** Resolve DSA user ports to their conduit plus a port index (default: stop at the user port). */
  dsa?: boolean;
  /** PPP interface name -> the Ethernet device of its PPPoE session, for hosts with several sessions. */
  pppoe?: Readonly<Record<string, string>>;
}

export interface EgressPath {
  /** The lowest device: where the datapath sends the frame. */
  oif: number;
  encap: Encap;
  /** MAC of the device that builds the Ethernet header (the L3 or VLAN device, the PPPoE device). */
  smac: Uint8Array;
  dmac: Uint8Array;
  /** Device names from the L3 device down, for messages. */
  path: string[];
}

/**
 * retry: may become offloadable without configuration change; stale: the snapshot lacks something
 * (a device, a session, a VLAN table) that a refresh may bring.
 */
export type EgressResult = { ok: true; path: EgressPath } | { ok: false; reason: string; retry: boolean; stale?: true };
type Failure = Extract<EgressResult, { ok: false }>;

/** A device as the kernel has it now (state, MTU), null when it is gone; the snapshot's by default. */
export type LiveLink = (link: LinkInfo) => LinkInfo | null;

/** The bridge FDB entry for `mac` in `vid` of `bridge` (vid 0 without VLAN filtering), null when there is none. */
export type FdbLookup = (bridge: LinkInfo, mac: Uint8Array, vid: number) => FdbReply | null;

export interface LowerDevice {
  ifname: string;
  ifindex: number;
  /** How it was found: the devices from the named or routed one down, e.g. "pppoe-wan > wan.7 > wan". */
  reason: string;
}

/** A named device that cannot be resolved to devices to attach to. */
export class TopologyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TopologyError";
  }
}

const MAX_DEPTH = 8;
const ETH_MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** The DSA port index of a user port: its phys_port_name "pN". */
export function dsaPortIndex(link: LinkInfo): number | null {
  const m = /^p(\d+)$/.exec(link.portName ?? "");
  return m ? Number(m[1]) : null;
}

export class Topology {
  private readonly links = new Map<number, LinkInfo>();
  private readonly names = new Map<string, LinkInfo>();
  private readonly brVlans = new Map<number, BridgeVlan[]>();
  private sessions: PppoeSession[] = [];
  private pppdHints = new Map<string, string>();
  private pairing: Map<number, PppoeSession | string> | null = null;
  private taggers = new Map<number, string>();

  constructor(readonly options: TopologyOptions = {}) {}

  /** Replaces the snapshot. */
  load(links: Iterable<LinkInfo>, bridgeVlans: Iterable<[number, BridgeVlan[]]>, sessions: PppoeSession[], pppd = new Map<string, string>()): void {
    this.links.clear();
    this.names.clear();
    this.brVlans.clear();
    for (const l of links) this.putLink(l);
    for (const [ifindex, vlans] of bridgeVlans) this.brVlans.set(ifindex, vlans);
    this.setPppoe(sessions, pppd);
  }

  /** DSA conduit ifindex -> tagging protocol (/sys/class/net/CONDUIT/dsa/tagging: "mtk", "qca", ...). */
  setDsaTaggers(taggers: Map<number, string>): void {
    this.taggers = taggers;
  }

  /** The DSA tagging protocol of a conduit, null when it is not one (or the kernel does not say). */
  dsaTagger(conduit: number): string | null {
    return this.taggers.get(conduit) ?? null;
  }

  /** The conduits beneath the snapshot's DSA user ports. */
  dsaConduits(): number[] {
    return [...new Set([...this.links.values()].filter((l) => l.kind === "dsa").map((l) => l.dsaConduit || l.link))];
  }

  /** New /proc/net/pppoe contents and pppd command-line hints (PPP interface -> device). */
  setPppoe(sessions: PppoeSession[], pppd = new Map<string, string>()): void {
    this.sessions = sessions;
    this.pppdHints = pppd;
    this.pairing = null;
  }

  /**
   * Updates the snapshot from an rtnetlink link notification: RTM_NEWLINK/RTM_DELLINK of family
   * AF_UNSPEC (the device) or AF_BRIDGE (its bridge VLANs; DELLINK: it left the bridge).
   * Other messages are ignored. PPPoE sessions are not part of link messages: see setPppoe.
   */
  applyLinkMessage(buf: Uint8Array, m: MessageRef): void {
    if (m.type !== RTM_NEWLINK && m.type !== RTM_DELLINK) return;
    const family = linkFamily(buf, m);
    const ifindex = linkIndex(buf, m);
    if (family === AF_BRIDGE) {
      // The kernel's notifications carry the VLAN table (RTEXT_FILTER_BRVLAN_COMPRESSED) and
      // leave IFLA_AF_SPEC out when it is empty.
      if (m.type === RTM_DELLINK) this.brVlans.delete(ifindex);
      else this.brVlans.set(ifindex, parseBridgeLink(buf, m).vlans ?? []);
      return;
    }
    const old = this.links.get(ifindex);
    if (old) this.names.delete(old.name);
    if (m.type === RTM_DELLINK) {
      this.links.delete(ifindex);
      this.brVlans.delete(ifindex);
    } else {
      this.putLink(parseLink(buf, { ...m, type: RTM_NEWLINK }));
    }
    this.pairing = null;
  }

  /** Replaces one device's entry (a fresh RTM_GETLINK reply). */
  updateLink(l: LinkInfo): void {
    const old = this.links.get(l.ifindex);
    if (old && old.name !== l.name) this.names.delete(old.name);
    this.putLink(l);
    this.pairing = null;
  }

  private putLink(l: LinkInfo): void {
    this.links.set(l.ifindex, l);
    this.names.set(l.name, l);
  }

  link(ifindex: number): LinkInfo | null {
    return this.links.get(ifindex) ?? null;
  }

  linkByName(name: string): LinkInfo | null {
    return this.names.get(name) ?? null;
  }

  allLinks(): LinkInfo[] {
    return [...this.links.values()];
  }

  /** A bridge port's (or, for the bridge's ifindex, the bridge's own) VLAN entries; null if unknown. */
  bridgeVlans(ifindex: number): BridgeVlan[] | null {
    return this.brVlans.get(ifindex) ?? null;
  }

  /** The PPPoE session a PPP interface carries, or why it cannot be told. */
  pppoeSession(ppp: LinkInfo): PppoeSession | string {
    return this.pairings().get(ppp.ifindex) ?? `${ppp.name} is not a PPPoE interface`;
  }

  /**
   * Pairs PPP interfaces with PPPoE sessions; the kernel does not say which unit a session feeds.
   * By the `pppoe` option, then by pppd's command line ("ifname X ... nic-DEV"), then by
   * elimination (one PPP interface and one session left).
   */
  private pairings(): Map<number, PppoeSession | string> {
    if (this.pairing) return this.pairing;
    const out = new Map<number, PppoeSession | string>();
    const ppps = [...this.links.values()].filter((l) => l.type === ARPHRD_PPP);
    const free = new Set(this.sessions);
    const byDevice = (ppp: LinkInfo, dev: string, source: string) => {
      const found = this.sessions.filter((s) => s.device === dev);
      if (found.length === 1) {
        out.set(ppp.ifindex, found[0]!);
        free.delete(found[0]!);
      } else {
        out.set(ppp.ifindex, found.length
          ? `${found.length} PPPoE sessions run on ${dev} (${source}): cannot tell which one ${ppp.name} carries`
          : `no PPPoE session on ${dev} (${source}) in /proc/net/pppoe`);
      }
    };
    const rest: LinkInfo[] = [];
    for (const ppp of ppps) {
      const opt = this.options.pppoe?.[ppp.name];
      const hint = this.pppdHints.get(ppp.name);
      if (opt !== undefined) byDevice(ppp, opt, "configured");
      else if (hint !== undefined) byDevice(ppp, hint, "pppd command line");
      else rest.push(ppp);
    }
    for (const ppp of rest) {
      if (free.size === 0) out.set(ppp.ifindex, `no PPPoE session for ${ppp.name} in /proc/net/pppoe (PPP without PPPoE?)`);
      else if (free.size === 1 && rest.length === 1) out.set(ppp.ifindex, [...free][0]!);
      else {
        out.set(ppp.ifindex, `cannot tell which of ${free.size} PPPoE sessions ${ppp.name} carries: name its device (pppoe option)`);
      }
    }
    this.pairing = out;
    return out;
  }

  /** The PPP interface carrying `session`, null when none is paired with it. */
  private pppOf(session: PppoeSession): LinkInfo | null {
    for (const [ifindex, s] of this.pairings()) if (s === session) return this.links.get(ifindex) ?? null;
    return null;
  }

  /**
   * From the routed device down to the lowest one. `dmac`: the neighbour's MAC on `l3` (ignored
   * for a PPP device, whose frames go to the PPPoE peer). `l3` is assumed up and of a usable type
   * (nexthop.ts checks it before the neighbour lookup).
   */
  egress(l3: LinkInfo, dmac: Uint8Array | null, fdb: FdbLookup, live: LiveLink = (l) => l): EgressResult {
    const fail = (reason: string, retry = false): Failure => ({ ok: false, reason, retry });
    const stale = (reason: string, retry = false): Failure => ({ ok: false, reason, retry, stale: true });
    const path = [l3.name];
    const tags: VlanTag[] = [];
    let pppoeSid: number | null = null;
    let dsaPort: number | null = null;
    let cur = l3;
    if (l3.type === ARPHRD_PPP) {
      const s = this.pppoeSession(l3);
      if (typeof s === "string") return stale(s);
      const known = this.names.get(s.device);
      const dev = known && live(known);
      if (!dev) return stale(`PPPoE device ${s.device} of ${l3.name} not found`, true);
      pppoeSid = s.sid;
      dmac = s.peer;
      cur = dev;
      path.push(dev.name);
    }
    if (dmac === null) return fail(`no destination MAC for ${l3.name}`);
    let smac: Uint8Array | null = null;
    for (let depth = 0; ; depth++) {
      if (depth > MAX_DEPTH) return fail(`device stack under ${l3.name} deeper than ${MAX_DEPTH}`);
      if (cur.type !== ARPHRD_ETHER) return fail(`${cur.name} is not Ethernet (ARPHRD ${cur.type})`);
      if (!cur.up) return fail(cur === l3 ? `${cur.name} is down` : `${cur.name} (under ${l3.name}) is down`);
      smac ??= cur.mac;
      if (cur.kind === "vlan" && cur.vlan) {
        const known = this.links.get(cur.link);
        const real = known && live(known);
        if (!real) return stale(`VLAN device ${cur.name} has no lower device here`);
        tags.unshift(cur.vlan);
        cur = real;
      } else if (cur.kind === "bridge") {
        const step = this.bridgeEgress(cur, dmac, tags, fdb, live);
        if ("reason" in step) return step;
        cur = step;
      } else if (cur.kind === "dsa" && this.options.dsa) {
        const known = this.links.get(cur.dsaConduit || cur.link);
        const conduit = known && live(known);
        const port = dsaPortIndex(cur);
        if (!conduit) return stale(`DSA port ${cur.name} has no conduit here`);
        if (port === null) return fail(`DSA port ${cur.name} has no port index (phys_port_name "${cur.portName ?? ""}")`);
        dsaPort = port;
        cur = conduit;
      } else {
        break;
      }
      path.push(cur.name);
    }
    if (tags.length > 2) return fail(`${tags.length} VLAN tags under ${l3.name} (at most two)`);
    return { ok: true, path: { oif: cur.ifindex, encap: { vlans: tags, pppoeSid, dsaPort }, smac, dmac, path } };
  }

  /** Which port of `br` a frame to `dmac` leaves by; updates `tags` as the bridge does. */
  private bridgeEgress(br: LinkInfo, dmac: Uint8Array, tags: VlanTag[], fdb: FdbLookup, live: LiveLink): LinkInfo | Failure {
    const fail = (reason: string, retry = false): Failure => ({ ok: false, reason, retry });
    const stale = (reason: string, retry = false): Failure => ({ ok: false, reason, retry, stale: true });
    let vid = 0;
    const filtering = br.bridge?.vlanFiltering === true;
    const proto = br.bridge?.vlanProtocol ?? 0x8100;
    if (filtering) {
      const self = this.brVlans.get(br.ifindex);
      if (!self) return stale(`no VLAN table for bridge ${br.name}`, true);
      if (tags[0]?.proto === proto) {
        vid = tags.shift()!.id;
        if (!self.some((v) => v.vid === vid)) return fail(`VLAN ${vid} is not configured on bridge ${br.name} itself`);
      } else {
        const pvid = self.find((v) => v.pvid);
        if (!pvid) return fail(`bridge ${br.name} has no PVID for untagged frames`);
        vid = pvid.vid;
      }
    }
    const where = `${formatMac(dmac)} on ${br.name}${filtering ? ` VLAN ${vid}` : ""}`;
    const entry = fdb(br, dmac, vid);
    if (!entry) return fail(`no bridge FDB entry for ${where}`, true);
    if (entry.ifindex === br.ifindex || entry.state & NUD_PERMANENT) return fail(`${where} is the bridge's own address`);
    const known = this.links.get(entry.ifindex);
    const port = known && live(known);
    if (!port) return stale(`bridge port ${entry.ifindex} of ${br.name} not found`, true);
    if (port.master !== br.ifindex) return stale(`${port.name} is not a port of ${br.name}`, true);
    if (port.brportState !== null && port.brportState !== BR_STATE_FORWARDING) {
      return fail(`bridge port ${port.name} is ${brStateName(port.brportState)}`, true);
    }
    if (filtering) {
      const pv = this.brVlans.get(port.ifindex)?.find((v) => v.vid === vid);
      if (!pv) return fail(`bridge port ${port.name} is not in VLAN ${vid}`);
      if (!pv.untagged) tags.unshift({ id: vid, proto });
    }
    return port;
  }

  /**
   * The device the kernel routes a packet from, given the lowest device it arrived on and the
   * encapsulation the datapath found (VLAN protocol 0: either); null when the kernel would not
   * deliver it to an L3 device (no such VLAN device or session, VLAN not allowed, port blocked).
   */
  ingressDevice(lowest: number, encap: Encap): number | null {
    const lowestLink = this.links.get(lowest);
    if (!lowestLink) return null;
    let cur: LinkInfo = lowestLink;
    const tags = [...encap.vlans];
    if (encap.dsaPort !== null) {
      const conduit = cur.ifindex;
      const users = [...this.links.values()].filter((l) =>
        l.kind === "dsa" && (l.dsaConduit || l.link) === conduit && dsaPortIndex(l) === encap.dsaPort);
      if (users.length !== 1) return null;
      cur = users[0]!;
    }
    for (let depth = 0; ; depth++) {
      if (depth > MAX_DEPTH) return null;
      // vlan_do_receive runs before the bridge's rx handler: a VLAN device on a port wins.
      const vd: LinkInfo | null | undefined = tags.length ? this.vlanDevice(cur.ifindex, tags[0]!) : null;
      if (vd === undefined) return null;
      if (vd) {
        tags.shift();
        cur = vd;
        continue;
      }
      const br = cur.master ? this.links.get(cur.master) : undefined;
      if (br?.kind !== "bridge") break;
      if (cur.brportState !== null && cur.brportState !== BR_STATE_FORWARDING) return null;
      if (br.bridge?.vlanFiltering) {
        const proto = br.bridge.vlanProtocol;
        const portVlans = this.brVlans.get(cur.ifindex) ?? [];
        let vid: number;
        if (tags.length && (tags[0]!.proto === proto || tags[0]!.proto === 0)) {
          vid = tags.shift()!.id;
          if (!portVlans.some((v) => v.vid === vid)) return null;
        } else {
          const pvid = portVlans.find((v) => v.pvid);
          if (!pvid) return null;
          vid = pvid.vid;
        }
        const self = this.brVlans.get(br.ifindex)?.find((v) => v.vid === vid);
        if (!self) return null;
        if (!self.untagged) tags.unshift({ id: vid, proto });
      }
      cur = br;
    }
    if (tags.length) return null;
    if (encap.pppoeSid !== null) {
      const name = cur.name;
      const s = this.sessions.find((x) => x.device === name && x.sid === encap.pppoeSid);
      const ppp = s ? this.pppOf(s) : null;
      if (!ppp) return null;
      cur = ppp;
    }
    return cur.ifindex;
  }

  /** The VLAN device on `lower` for `tag`: null when none, undefined when ambiguous (protocol 0). */
  private vlanDevice(lower: number, tag: VlanTag): LinkInfo | null | undefined {
    const found = [...this.links.values()].filter((l) =>
      l.kind === "vlan" && l.link === lower && l.vlan?.id === tag.id && (tag.proto === 0 || l.vlan.proto === tag.proto));
    if (found.length > 1) return undefined;
    return found[0] ?? null;
  }

  /**
   * The lowest devices beneath the named devices, or beneath every L3 interface (`l3`: the
   * ifindexes with an address or route) for "all"; deduplicated, in order. A named device that
   * cannot be resolved throws TopologyError; with "all" such devices are passed to `skip`.
   */
  lowerDevices(
    names: readonly string[] | "all",
    opts: { dsa?: boolean; l3?: Iterable<number>; skip?: (ifname: string, reason: string) => void } = {},
  ): LowerDevice[] {
    const dsa = opts.dsa ?? this.options.dsa ?? false;
    const out = new Map<number, LowerDevice>();
    const add = (l: LinkInfo, path: string[]) => {
      if (!out.has(l.ifindex)) out.set(l.ifindex, { ifname: l.name, ifindex: l.ifindex, reason: path.join(" > ") });
    };
    const walk = (l: LinkInfo, path: string[], depth: number): void => {
      path = [...path, l.name];
      if (depth > MAX_DEPTH) throw new TopologyError(`device stack under ${path[0]} deeper than ${MAX_DEPTH}`);
      if (l.type === ARPHRD_PPP) {
        const s = this.pppoeSession(l);
        if (typeof s === "string") throw new TopologyError(s);
        const dev = this.names.get(s.device);
        if (!dev) throw new TopologyError(`PPPoE device ${s.device} of ${l.name} not found`);
        return walk(dev, path, depth + 1);
      }
      if (l.type !== ARPHRD_ETHER) throw new TopologyError(`${l.name} is not an Ethernet or PPPoE device (ARPHRD ${l.type})`);
      if (l.kind === "vlan") {
        const real = this.links.get(l.link);
        if (!real) throw new TopologyError(`VLAN device ${l.name} has no lower device here`);
        return walk(real, path, depth + 1);
      }
      if (l.kind === "bridge") {
        for (const port of this.links.values()) if (port.master === l.ifindex) walk(port, path, depth + 1);
        return;
      }
      if (l.kind === "dsa" && dsa) {
        const conduit = this.links.get(l.dsaConduit || l.link);
        if (!conduit) throw new TopologyError(`DSA port ${l.name} has no conduit here`);
        return walk(conduit, path, depth + 1);
      }
      add(l, path);
    };
    if (names === "all") {
      for (const ifindex of new Set(opts.l3 ?? [])) {
        const l = this.links.get(ifindex);
        if (!l || l.loopback || !l.adminUp) continue;
        try {
          walk(l, [], 0);
        } catch (e) {
          if (!(e instanceof TopologyError)) throw e;
          opts.skip?.(l.name, e.message);
        }
      }
    } else {
      for (const name of names) {
        const l = this.names.get(name);
        if (!l) throw new TopologyError(`no interface named ${name}`);
        walk(l, [], 0);
      }
    }
    return [...out.values()];
  }
}

/** A MAC written "aa:bb:cc:dd:ee:ff" as bytes (tests and configuration). */
export function parseMac(s: string): Uint8Array {
  if (!ETH_MAC.test(s.toLowerCase())) throw new TopologyError(`not a MAC address: ${s}`);
  return new Uint8Array(s.split(":").map((b) => parseInt(b, 16)));
}
