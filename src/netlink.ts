// rtnetlink messages as pure functions over byte buffers: request builders write into a caller's
// buffer and return the length; parsers read a received buffer. Layouts are those of the uapi
// headers linux/netlink.h, rtnetlink.h, neighbour.h, if_link.h and netconf.h. Netlink uses host
// byte order, except RTA_SPORT/RTA_DPORT (big endian) and addresses (network order).
import { AF_INET } from "./abi.ts";

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_GETROUTE = 26;
export const RTM_NEWRULE = 32;
export const RTM_GETRULE = 34;
export const RTM_NEWNEIGH = 28;
export const RTM_GETNEIGH = 30;
export const RTM_NEWQDISC = 36;
export const RTM_GETQDISC = 38;
export const RTM_NEWNETCONF = 80;
export const RTM_GETNETCONF = 82;

const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_DUMP = 0x300;
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;
const NLMSG_HDRLEN = 16;

/** rtm_flags: reply with the FIB entry that matched instead of the resulting dst. */
export const RTM_F_FIB_MATCH = 0x2000;

const RTA_DST = 1;
const RTA_SRC = 2;
const RTA_IIF = 3;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_METRICS = 8;
const RTA_MULTIPATH = 9;
const RTA_TABLE = 15;
const RTA_MARK = 16;
const RTA_VIA = 18;
const RTA_ENCAP = 22;
const RTA_IP_PROTO = 27;
const RTA_SPORT = 28;
const RTA_DPORT = 29;
const RTA_NH_ID = 30;
const RTAX_MTU = 2;

export const RTN_UNICAST = 1;
const RTN_NAMES = [
  "unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable",
  "prohibit", "throw", "nat", "xresolve",
];
export function routeTypeName(type: number): string {
  return RTN_NAMES[type] ?? `type ${type}`;
}

const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_VLAN = 5;
const NDA_MASTER = 9;

export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
const NUD_NAMES: readonly [number, string][] = [
  [NUD_INCOMPLETE, "INCOMPLETE"], [NUD_REACHABLE, "REACHABLE"], [NUD_STALE, "STALE"],
  [NUD_DELAY, "DELAY"], [NUD_PROBE, "PROBE"], [NUD_FAILED, "FAILED"], [NUD_NOARP, "NOARP"],
  [NUD_PERMANENT, "PERMANENT"],
];
/** "STALE", "INCOMPLETE|FAILED", "NONE" as `ip neigh` prints them. */
export function nudName(state: number): string {
  const names = NUD_NAMES.filter(([bit]) => state & bit).map(([, name]) => name);
  return names.length ? names.join("|") : "NONE";
}

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_AF_SPEC = 26;
const IFLA_EXT_MASK = 29;
const IFLA_LINK_NETNSID = 37;
const IFLA_PHYS_PORT_NAME = 38;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;
const IFLA_VLAN_ID = 1;
const IFLA_VLAN_PROTOCOL = 5;
const IFLA_BR_VLAN_FILTERING = 7;
const IFLA_BR_VLAN_PROTOCOL = 8;
const IFLA_BR_VLAN_DEFAULT_PVID = 39;
const IFLA_BRPORT_STATE = 1;
/** IFLA_DSA_CONDUIT, formerly IFLA_DSA_MASTER. */
const IFLA_DSA_CONDUIT = 1;
const IFLA_BRIDGE_VLAN_INFO = 2;
export const BRIDGE_VLAN_INFO_PVID = 0x2;
export const BRIDGE_VLAN_INFO_UNTAGGED = 0x4;
const BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8;
const BRIDGE_VLAN_INFO_RANGE_END = 0x10;
/** RTEXT_FILTER_* for IFLA_EXT_MASK. */
export const RTEXT_FILTER_BRVLAN = 0x2;
export const RTEXT_FILTER_SKIP_STATS = 0x8;
export const ARPHRD_ETHER = 1;
export const ARPHRD_PPP = 512;
export const ARPHRD_LOOPBACK = 772;
export const AF_BRIDGE = 7;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
/** Bridge port STP states (BR_STATE_*). */
export const BR_STATE_FORWARDING = 3;
const BR_STATE_NAMES = ["disabled", "listening", "learning", "forwarding", "blocking"];
export function brStateName(state: number): string {
  return BR_STATE_NAMES[state] ?? `state ${state}`;
}
const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;
const IFF_RUNNING = 0x40;

const IFA_ADDRESS = 1;
/** ifa_scope at or above which an address is not routable beyond the link (RT_SCOPE_LINK). */
export const RT_SCOPE_LINK = 253;

const NETCONFA_IFINDEX = 1;
const NETCONFA_FORWARDING = 2;
export const NETCONFA_IFINDEX_ALL = -1;

/** What to look up: a packet received on `iif` and forwarded, as conntrack saw it. */
export interface RouteQuery {
  family: 2 | 10;
  /** Ingress ifindex. */
  iif: number;
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  /** Ports in host byte order (0 for protocols without ports). */
  sport: number;
  dport: number;
  /** The packet's skb mark (fwmark) for policy routing. */
  mark: number;
}

/** An 802.1Q (0x8100) or 802.1ad (0x88a8) tag; proto 0 stands for "either" in ingress lookups. */
export interface VlanTag {
  id: number;
  proto: number;
}

export interface LinkInfo {
  ifindex: number;
  name: string;
  mac: Uint8Array;
  mtu: number;
  /** ARPHRD_* (ARPHRD_ETHER = 1, ARPHRD_PPP = 512). */
  type: number;
  /** IFLA_INFO_KIND ("bridge", "veth", "vlan", "dsa", "ppp", ...), null for plain hardware devices. */
  kind: string | null;
  /** IFF_UP and IFF_RUNNING (administratively up with carrier). */
  up: boolean;
  /** IFF_UP alone. */
  adminUp: boolean;
  loopback: boolean;
  /** ifindex of the master device (bridge, bond, VRF), 0 when none. */
  master: number;
  /** IFLA_LINK: the device beneath (VLAN real device, DSA conduit); 0 when none or in another namespace. */
  link: number;
  /** kind "vlan": the tag this device adds. */
  vlan: VlanTag | null;
  /** kind "dsa": IFLA_DSA_CONDUIT, the conduit's ifindex; 0 otherwise. */
  dsaConduit: number;
  /** IFLA_PHYS_PORT_NAME ("p3" for DSA user port 3), null when the driver has none. */
  portName: string | null;
  /** IFLA_INFO_SLAVE_KIND: "bridge" for a bridge port, null when not enslaved. */
  slaveKind: string | null;
  /** A bridge port's STP state (BR_STATE_*), null for other devices. */
  brportState: number | null;
  /** kind "bridge": its VLAN settings. */
  bridge: { vlanFiltering: boolean; vlanProtocol: number; defaultPvid: number } | null;
}

/** A bridge VLAN entry of a port (or of the bridge device itself: its "self" entries). */
export interface BridgeVlan {
  vid: number;
  /** BRIDGE_VLAN_INFO_PVID: untagged and priority-tagged frames received get this VLAN. */
  pvid: boolean;
  /** BRIDGE_VLAN_INFO_UNTAGGED: frames of this VLAN leave without a tag. */
  untagged: boolean;
}

/** An RTM_NEWLINK message of family AF_BRIDGE (RTEXT_FILTER_BRVLAN): a device's bridge VLANs. */
export interface BridgeLinkReply {
  ifindex: number;
  master: number;
  /** null when the message carries no IFLA_AF_SPEC (VLAN filtering off or not requested). */
  vlans: BridgeVlan[] | null;
}

/** A bridge forwarding database entry (RTM_NEWNEIGH, family AF_BRIDGE). */
export interface FdbReply {
  /** The port the address is behind; the bridge itself for its own (local) addresses. */
  ifindex: number;
  master: number;
  vlan: number;
  state: number;
  flags: number;
  lladdr: Uint8Array | null;
}

export interface AddrReply {
  family: number;
  ifindex: number;
  scope: number;
  address: Uint8Array | null;
}

export interface RouteReply {
  type: number;
  table: number;
  oif: number;
  /** 16 bytes (IPv4 in the first four) or null for a directly connected destination. */
  gateway: Uint8Array | null;
  /** Family of `gateway`: the route's, or AF_INET6 for an IPv4 route via an IPv6 next hop. */
  gatewayFamily: number;
  multipath: boolean;
  encap: boolean;
  nhid: number;
  /** RTAX_MTU of the route, 0 when unset. */
  mtu: number;
}

export interface NeighReply {
  state: number;
  lladdr: Uint8Array | null;
}

/** A netlink error reply (nlmsgerr) with the kernel's extended ack message, if any. */
export interface ErrorReply {
  errno: number;
  extack: string | null;
}

/** A message in a receive buffer: its type and payload bounds. */
export interface MessageRef {
  type: number;
  start: number;
  end: number;
}

export class MalformedMessageError extends Error {
  constructor(what: string) {
    super(`malformed netlink message: ${what}`);
    this.name = "MalformedMessageError";
  }
}

const align4 = (n: number) => (n + 3) & ~3;
const addrLen = (family: number) => (family === AF_INET ? 4 : 16);
const view = (buf: Uint8Array) => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

/** Appends attributes after a fixed header; `finish` writes nlmsg_len and returns it. */
class Writer {
  private readonly v: DataView;
  private off: number;

  constructor(private readonly buf: Uint8Array, type: number, seq: number, fixedLen: number) {
    this.v = view(buf);
    this.off = NLMSG_HDRLEN + align4(fixedLen);
    buf.fill(0, 0, this.off);
    this.v.setUint16(4, type, HOST_LE);
    this.v.setUint16(6, NLM_F_REQUEST, HOST_LE);
    this.v.setUint32(8, seq, HOST_LE);
  }

  u8(at: number, value: number): void {
    this.v.setUint8(NLMSG_HDRLEN + at, value);
  }

  i32(at: number, value: number): void {
    this.v.setInt32(NLMSG_HDRLEN + at, value, HOST_LE);
  }

  private attr(type: number, len: number): number {
    this.v.setUint16(this.off, 4 + len, HOST_LE);
    this.v.setUint16(this.off + 2, type, HOST_LE);
    const payload = this.off + 4;
    this.buf.fill(0, payload, payload + align4(len));
    this.off = payload + align4(len);
    return payload;
  }

  attrU8(type: number, value: number): void {
    this.v.setUint8(this.attr(type, 1), value);
  }

  attrU32(type: number, value: number): void {
    this.v.setUint32(this.attr(type, 4), value >>> 0, HOST_LE);
  }

  attrI32(type: number, value: number): void {
    this.v.setInt32(this.attr(type, 4), value, HOST_LE);
  }

  attrBe16(type: number, value: number): void {
    this.v.setUint16(this.attr(type, 2), value, false);
  }

  attrBytes(type: number, bytes: Uint8Array): void {
    this.buf.set(bytes, this.attr(type, bytes.length));
  }

  flags(value: number): void {
    this.v.setUint16(6, value, HOST_LE);
  }

  attrU16(type: number, value: number): void {
    this.v.setUint16(this.attr(type, 2), value, HOST_LE);
  }

  finish(): number {
    this.v.setUint32(0, this.off, HOST_LE);
    return this.off;
  }
}

/** Protocols whose RTA_IP_PROTO the kernel accepts in a route request; others are left out. */
function lookupProto(family: number, proto: number): "ports" | "proto" | null {
  if (proto === 6 || proto === 17) return "ports";
  if ((family === AF_INET && proto === 1) || (family !== AF_INET && proto === 58)) return "proto";
  return null;
}

/**
 * RTM_GETROUTE as the kernel's input path sees a packet arriving on `iif` (RTA_IIF makes it run
 * ip_route_input: forwarding, martian and rp_filter checks apply), with RTM_F_FIB_MATCH so the
 * reply is the FIB entry that matched (and shows multipath and encapsulation).
 */
export function buildRouteGet(buf: Uint8Array, seq: number, q: RouteQuery): number {
  const len = addrLen(q.family);
  const w = new Writer(buf, RTM_GETROUTE, seq, 12);
  w.u8(0, q.family);
  w.u8(1, len * 8); // rtm_dst_len
  w.u8(2, len * 8); // rtm_src_len
  w.i32(8, RTM_F_FIB_MATCH);
  w.attrBytes(RTA_DST, q.dst.subarray(0, len));
  w.attrBytes(RTA_SRC, q.src.subarray(0, len));
  w.attrU32(RTA_IIF, q.iif);
  w.attrU32(RTA_MARK, q.mark);
  const l4 = lookupProto(q.family, q.proto);
  if (l4) w.attrU8(RTA_IP_PROTO, q.proto);
  if (l4 === "ports") {
    w.attrBe16(RTA_SPORT, q.sport);
    w.attrBe16(RTA_DPORT, q.dport);
  }
  return w.finish();
}

/** RTM_GETNEIGH for one entry: `addr` (16 bytes, IPv4 in the first four) on `ifindex`. */
export function buildNeighGet(buf: Uint8Array, seq: number, family: number, ifindex: number, addr: Uint8Array): number {
  const w = new Writer(buf, RTM_GETNEIGH, seq, 12);
  w.u8(0, family);
  w.i32(4, ifindex);
  w.attrBytes(NDA_DST, addr.subarray(0, addrLen(family)));
  return w.finish();
}

/** RTM_GETLINK for one interface by index. */
export function buildLinkGet(buf: Uint8Array, seq: number, ifindex: number): number {
  const w = new Writer(buf, RTM_GETLINK, seq, 16);
  w.i32(4, ifindex);
  return w.finish();
}

/** RTM_GETLINK dump of every interface, as `family` sees them (AF_BRIDGE: bridge ports and bridges). */
export function buildLinkDump(buf: Uint8Array, seq: number, family: number, extMask: number): number {
  const w = new Writer(buf, RTM_GETLINK, seq, 16);
  w.flags(NLM_F_REQUEST | NLM_F_DUMP);
  w.u8(0, family);
  w.attrU32(IFLA_EXT_MASK, extMask);
  return w.finish();
}

/** RTM_GETQDISC dump of every qdisc (struct tcmsg, all zero: every device). */
export function buildQdiscDump(buf: Uint8Array, seq: number): number {
  const w = new Writer(buf, RTM_GETQDISC, seq, 20);
  w.flags(NLM_F_REQUEST | NLM_F_DUMP);
  return w.finish();
}

/** RTM_GETRULE dump of one family's policy routing rules (struct fib_rule_hdr, 12 bytes). */
export function buildRuleDump(buf: Uint8Array, seq: number, family: number): number {
  const w = new Writer(buf, RTM_GETRULE, seq, 12);
  w.flags(NLM_F_REQUEST | NLM_F_DUMP);
  w.u8(0, family);
  return w.finish();
}

// Rule selectors on the packet's layer 4 (linux/fib_rules.h).
const FRA_IP_PROTO = 22;
const FRA_SPORT_RANGE = 23;
const FRA_DPORT_RANGE = 24;

/** Whether a policy routing rule selects on the IP protocol or the ports. */
export function ruleMatchesL4(buf: Uint8Array, m: MessageRef): boolean {
  if (m.type !== RTM_NEWRULE) throw new MalformedMessageError(`type ${m.type} where RTM_NEWRULE was expected`);
  requirePayload(m, 12, "fib_rule_hdr");
  let l4 = false;
  eachAttr(view(buf), m.start + 12, m.end, (type) => {
    if (type === FRA_IP_PROTO || type === FRA_SPORT_RANGE || type === FRA_DPORT_RANGE) l4 = true;
  });
  return l4;
}

/** TC_H_ROOT: the parent handle of a device's root qdisc. */
export const TC_H_ROOT = 0xffffffff;
const TCA_KIND = 1;

/** A qdisc from a dump: its device, its parent handle and its kind ("cake", "htb", ...). */
export function parseQdisc(buf: Uint8Array, m: MessageRef): { ifindex: number; parent: number; kind: string } {
  if (m.type !== RTM_NEWQDISC) throw new MalformedMessageError(`type ${m.type} where RTM_NEWQDISC was expected`);
  requirePayload(m, 20, "tcmsg");
  const v = view(buf);
  const q = { ifindex: v.getInt32(m.start + 4, HOST_LE), parent: v.getUint32(m.start + 12, HOST_LE), kind: "" };
  eachAttr(v, m.start + 20, m.end, (type, off, len) => {
    if (type === TCA_KIND) q.kind = cstring(buf, off, len);
  });
  return q;
}

/** RTM_GETADDR dump of every address of `family` (AF_INET or AF_INET6). */
export function buildAddrDump(buf: Uint8Array, seq: number, family: number): number {
  const w = new Writer(buf, RTM_GETADDR, seq, 8);
  w.flags(NLM_F_REQUEST | NLM_F_DUMP);
  w.u8(0, family);
  return w.finish();
}

/** RTM_GETROUTE dump of every route of `family`, all tables. */
export function buildRouteDump(buf: Uint8Array, seq: number, family: number): number {
  const w = new Writer(buf, RTM_GETROUTE, seq, 12);
  w.flags(NLM_F_REQUEST | NLM_F_DUMP);
  w.u8(0, family);
  return w.finish();
}

/**
 * RTM_GETNEIGH of family AF_BRIDGE: the forwarding database entry for `mac` in `vid` (0 on a
 * bridge without VLAN filtering) of bridge `bridge`, answered with the port it is behind.
 */
export function buildFdbGet(buf: Uint8Array, seq: number, bridge: number, mac: Uint8Array, vid: number): number {
  const w = new Writer(buf, RTM_GETNEIGH, seq, 12);
  w.u8(0, AF_BRIDGE);
  w.attrBytes(NDA_LLADDR, mac.subarray(0, 6));
  w.attrU32(NDA_MASTER, bridge);
  if (vid) w.attrU16(NDA_VLAN, vid);
  return w.finish();
}

/** RTM_GETNETCONF for one interface, or NETCONFA_IFINDEX_ALL for the "all" settings. */
export function buildNetconfGet(buf: Uint8Array, seq: number, family: number, ifindex: number): number {
  const w = new Writer(buf, RTM_GETNETCONF, seq, 1);
  w.u8(0, family);
  w.attrI32(NETCONFA_IFINDEX, ifindex);
  return w.finish();
}

/** Calls `fn` for each attribute in [start, end); types have the NESTED/BYTEORDER bits cleared. */
function eachAttr(v: DataView, start: number, end: number, fn: (type: number, off: number, len: number) => void): void {
  let off = start;
  while (off + 4 <= end) {
    const len = v.getUint16(off, HOST_LE);
    if (len < 4 || off + len > end) throw new MalformedMessageError(`attribute length ${len} at offset ${off}`);
    fn(v.getUint16(off + 2, HOST_LE) & 0x3fff, off + 4, len - 4);
    off += align4(len);
  }
}

function cstring(buf: Uint8Array, off: number, len: number): string {
  const bytes = buf.subarray(off, off + len);
  const nul = bytes.indexOf(0);
  return new TextDecoder().decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/** A 16-byte address from a 4- or 16-byte attribute. */
function addr16(buf: Uint8Array, off: number, len: number): Uint8Array {
  if (len !== 4 && len !== 16) throw new MalformedMessageError(`address of ${len} bytes`);
  const a = new Uint8Array(16);
  a.set(buf.subarray(off, off + len));
  return a;
}

function requirePayload(m: MessageRef, fixed: number, what: string): void {
  if (m.end - m.start < fixed) throw new MalformedMessageError(`${what} of ${m.end - m.start} bytes`);
}

function parseError(buf: Uint8Array, v: DataView, flags: number, start: number, end: number): ErrorReply {
  if (end - start < 4 + NLMSG_HDRLEN) throw new MalformedMessageError("short nlmsgerr");
  const errno = -v.getInt32(start, HOST_LE);
  let extack: string | null = null;
  if (flags & NLM_F_ACK_TLVS) {
    const orig = flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(v.getUint32(start + 4, HOST_LE));
    eachAttr(v, start + 4 + orig, end, (type, off, len) => {
      if (type === NLMSGERR_ATTR_MSG) extack = cstring(buf, off, len);
    });
  }
  return { errno, extack };
}

/**
 * The reply to request `seq` among the `len` bytes received: the message, or the error the kernel
 * returned; null when the buffer holds only other messages (stale replies to earlier requests).
 */
export function findReply(buf: Uint8Array, len: number, seq: number): MessageRef | ErrorReply | null {
  const v = view(buf);
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const msgLen = v.getUint32(off, HOST_LE);
    if (msgLen < NLMSG_HDRLEN || off + msgLen > len) throw new MalformedMessageError(`message length ${msgLen}`);
    if (v.getUint32(off + 8, HOST_LE) === seq) {
      const type = v.getUint16(off + 4, HOST_LE);
      const start = off + NLMSG_HDRLEN;
      const end = off + msgLen;
      return type === NLMSG_ERROR ? parseError(buf, v, v.getUint16(off + 6, HOST_LE), start, end) : { type, start, end };
    }
    off += align4(msgLen);
  }
  return null;
}

/** What a receive buffer held for a dump: whether NLMSG_DONE came, whether the dump was inconsistent. */
export type DumpStatus = { done: boolean; interrupted: boolean } | ErrorReply;

/**
 * Hands each message of dump `seq` among the `len` bytes received to `fn`. done: NLMSG_DONE
 * arrived (otherwise further datagrams follow); interrupted: the kernel flagged the dump
 * inconsistent (NLM_F_DUMP_INTR: something changed while it ran; dump again). Or the error.
 */
export function scanDump(buf: Uint8Array, len: number, seq: number, fn: (m: MessageRef) => void): DumpStatus {
  const v = view(buf);
  let interrupted = false;
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const msgLen = v.getUint32(off, HOST_LE);
    if (msgLen < NLMSG_HDRLEN || off + msgLen > len) throw new MalformedMessageError(`message length ${msgLen}`);
    if (v.getUint32(off + 8, HOST_LE) === seq) {
      const type = v.getUint16(off + 4, HOST_LE);
      const flags = v.getUint16(off + 6, HOST_LE);
      const start = off + NLMSG_HDRLEN;
      const end = off + msgLen;
      if (type === NLMSG_ERROR) return parseError(buf, v, flags, start, end);
      if (flags & NLM_F_DUMP_INTR) interrupted = true;
      if (type === NLMSG_DONE) {
        const err = end - start >= 4 ? -v.getInt32(start, HOST_LE) : 0;
        if (err > 0) return { errno: err, extack: null };
        return { done: true, interrupted };
      }
      fn({ type, start, end });
    }
    off += align4(msgLen);
  }
  return { done: false, interrupted };
}

export function parseRoute(buf: Uint8Array, m: MessageRef): RouteReply {
  if (m.type !== RTM_NEWROUTE) throw new MalformedMessageError(`type ${m.type} where RTM_NEWROUTE was expected`);
  requirePayload(m, 12, "rtmsg");
  const v = view(buf);
  const family = v.getUint8(m.start);
  const r: RouteReply = {
    type: v.getUint8(m.start + 7), table: v.getUint8(m.start + 4), oif: 0, gateway: null,
    gatewayFamily: family, multipath: false, encap: false, nhid: 0, mtu: 0,
  };
  eachAttr(v, m.start + 12, m.end, (type, off, len) => {
    if (type === RTA_TABLE) r.table = v.getUint32(off, HOST_LE);
    else if (type === RTA_OIF) r.oif = v.getUint32(off, HOST_LE);
    else if (type === RTA_GATEWAY) r.gateway = addr16(buf, off, len);
    else if (type === RTA_VIA) {
      if (len < 2) throw new MalformedMessageError("short RTA_VIA");
      r.gatewayFamily = v.getUint16(off, HOST_LE);
      r.gateway = addr16(buf, off + 2, len - 2);
    } else if (type === RTA_MULTIPATH) r.multipath = true;
    else if (type === RTA_ENCAP) r.encap = true;
    else if (type === RTA_NH_ID) r.nhid = v.getUint32(off, HOST_LE);
    else if (type === RTA_METRICS) {
      eachAttr(v, off, off + len, (metric, moff) => {
        if (metric === RTAX_MTU) r.mtu = v.getUint32(moff, HOST_LE);
      });
    }
  });
  return r;
}

export function parseNeigh(buf: Uint8Array, m: MessageRef): NeighReply {
  if (m.type !== RTM_NEWNEIGH) throw new MalformedMessageError(`type ${m.type} where RTM_NEWNEIGH was expected`);
  requirePayload(m, 12, "ndmsg");
  const v = view(buf);
  const r: NeighReply = { state: v.getUint16(m.start + 8, HOST_LE), lladdr: null };
  eachAttr(v, m.start + 12, m.end, (type, off, len) => {
    if (type === NDA_LLADDR) r.lladdr = buf.slice(off, off + len);
  });
  return r;
}

/** The family of an RTM_NEWLINK/RTM_DELLINK message: AF_BRIDGE for bridge VLAN tables, else the device itself. */
export function linkFamily(buf: Uint8Array, m: MessageRef): number {
  requirePayload(m, 16, "ifinfomsg");
  return buf[m.start]!;
}

/** The ifindex an RTM_NEWLINK/RTM_DELLINK message is about. */
export function linkIndex(buf: Uint8Array, m: MessageRef): number {
  requirePayload(m, 16, "ifinfomsg");
  return view(buf).getInt32(m.start + 4, HOST_LE);
}

export function parseLink(buf: Uint8Array, m: MessageRef): LinkInfo {
  if (m.type !== RTM_NEWLINK) throw new MalformedMessageError(`type ${m.type} where RTM_NEWLINK was expected`);
  requirePayload(m, 16, "ifinfomsg");
  const v = view(buf);
  const flags = v.getUint32(m.start + 8, HOST_LE);
  const link: LinkInfo = {
    ifindex: v.getInt32(m.start + 4, HOST_LE), name: "", mac: new Uint8Array(0), mtu: 0,
    type: v.getUint16(m.start + 2, HOST_LE), kind: null,
    up: (flags & (IFF_UP | IFF_RUNNING)) === (IFF_UP | IFF_RUNNING), adminUp: (flags & IFF_UP) !== 0,
    loopback: (flags & IFF_LOOPBACK) !== 0, master: 0, link: 0, vlan: null, dsaConduit: 0, portName: null,
    slaveKind: null, brportState: null, bridge: null,
  };
  let otherNetns = false;
  const nested: { data?: [number, number]; slaveData?: [number, number] } = {};
  eachAttr(v, m.start + 16, m.end, (type, off, len) => {
    if (type === IFLA_IFNAME) link.name = cstring(buf, off, len);
    else if (type === IFLA_ADDRESS) link.mac = buf.slice(off, off + len);
    else if (type === IFLA_MTU) link.mtu = v.getUint32(off, HOST_LE);
    else if (type === IFLA_MASTER) link.master = v.getUint32(off, HOST_LE);
    else if (type === IFLA_LINK) link.link = v.getUint32(off, HOST_LE);
    else if (type === IFLA_LINK_NETNSID) otherNetns = true;
    else if (type === IFLA_PHYS_PORT_NAME) link.portName = cstring(buf, off, len);
    else if (type === IFLA_LINKINFO) {
      eachAttr(v, off, off + len, (info, ioff, ilen) => {
        if (info === IFLA_INFO_KIND) link.kind = cstring(buf, ioff, ilen);
        else if (info === IFLA_INFO_SLAVE_KIND) link.slaveKind = cstring(buf, ioff, ilen);
        else if (info === IFLA_INFO_DATA) nested.data = [ioff, ioff + ilen];
        else if (info === IFLA_INFO_SLAVE_DATA) nested.slaveData = [ioff, ioff + ilen];
      });
    }
  });
  if (otherNetns) link.link = 0; // an ifindex of another namespace means nothing here
  if (nested.data) parseInfoData(v, link, ...nested.data);
  if (nested.slaveData && link.slaveKind === "bridge") {
    eachAttr(v, ...nested.slaveData, (type, off) => {
      if (type === IFLA_BRPORT_STATE) link.brportState = v.getUint8(off);
    });
  }
  return link;
}

/** IFLA_INFO_DATA of the kinds the topology cares about. */
function parseInfoData(v: DataView, link: LinkInfo, start: number, end: number): void {
  if (link.kind === "vlan") {
    const tag: VlanTag = { id: 0, proto: ETH_P_8021Q };
    eachAttr(v, start, end, (type, off, len) => {
      if (type === IFLA_VLAN_ID) tag.id = v.getUint16(off, HOST_LE);
      else if (type === IFLA_VLAN_PROTOCOL && len >= 2) tag.proto = v.getUint16(off, false);
    });
    link.vlan = tag;
  } else if (link.kind === "bridge") {
    const br = { vlanFiltering: false, vlanProtocol: ETH_P_8021Q, defaultPvid: 1 };
    eachAttr(v, start, end, (type, off) => {
      if (type === IFLA_BR_VLAN_FILTERING) br.vlanFiltering = v.getUint8(off) !== 0;
      else if (type === IFLA_BR_VLAN_PROTOCOL) br.vlanProtocol = v.getUint16(off, false);
      else if (type === IFLA_BR_VLAN_DEFAULT_PVID) br.defaultPvid = v.getUint16(off, HOST_LE);
    });
    link.bridge = br;
  } else if (link.kind === "dsa") {
    eachAttr(v, start, end, (type, off) => {
      if (type === IFLA_DSA_CONDUIT) link.dsaConduit = v.getUint32(off, HOST_LE);
    });
  }
}

/** An AF_BRIDGE RTM_NEWLINK: the VLANs of a bridge port or of the bridge itself; ranges expanded. */
export function parseBridgeLink(buf: Uint8Array, m: MessageRef): BridgeLinkReply {
  if (m.type !== RTM_NEWLINK) throw new MalformedMessageError(`type ${m.type} where RTM_NEWLINK was expected`);
  requirePayload(m, 16, "ifinfomsg");
  const v = view(buf);
  if (v.getUint8(m.start) !== AF_BRIDGE) throw new MalformedMessageError("bridge link message of another family");
  const r: BridgeLinkReply = { ifindex: v.getInt32(m.start + 4, HOST_LE), master: 0, vlans: null };
  eachAttr(v, m.start + 16, m.end, (type, off, len) => {
    if (type === IFLA_MASTER) r.master = v.getUint32(off, HOST_LE);
    else if (type === IFLA_AF_SPEC) {
      const vlans: BridgeVlan[] = [];
      let rangeStart: number | null = null;
      eachAttr(v, off, off + len, (t, aoff, alen) => {
        if (t !== IFLA_BRIDGE_VLAN_INFO) return;
        if (alen < 4) throw new MalformedMessageError("short bridge_vlan_info");
        const flags = v.getUint16(aoff, HOST_LE);
        const vid = v.getUint16(aoff + 2, HOST_LE);
        if (flags & BRIDGE_VLAN_INFO_RANGE_BEGIN) {
          rangeStart = vid;
          return;
        }
        const first: number = flags & BRIDGE_VLAN_INFO_RANGE_END && rangeStart !== null ? rangeStart : vid;
        rangeStart = null;
        for (let id = first; id <= vid; id++) {
          vlans.push({ vid: id, pvid: (flags & BRIDGE_VLAN_INFO_PVID) !== 0, untagged: (flags & BRIDGE_VLAN_INFO_UNTAGGED) !== 0 });
        }
      });
      r.vlans = vlans;
    }
  });
  return r;
}

/** A bridge FDB entry (reply to buildFdbGet, or an RTM_NEWNEIGH AF_BRIDGE notification). */
export function parseFdb(buf: Uint8Array, m: MessageRef): FdbReply {
  if (m.type !== RTM_NEWNEIGH) throw new MalformedMessageError(`type ${m.type} where RTM_NEWNEIGH was expected`);
  requirePayload(m, 12, "ndmsg");
  const v = view(buf);
  if (v.getUint8(m.start) !== AF_BRIDGE) throw new MalformedMessageError("FDB entry of another family");
  const r: FdbReply = {
    ifindex: v.getInt32(m.start + 4, HOST_LE), state: v.getUint16(m.start + 8, HOST_LE), flags: v.getUint8(m.start + 10),
    master: 0, vlan: 0, lladdr: null,
  };
  eachAttr(v, m.start + 12, m.end, (type, off, len) => {
    if (type === NDA_LLADDR) r.lladdr = buf.slice(off, off + len);
    else if (type === NDA_MASTER) r.master = v.getUint32(off, HOST_LE);
    else if (type === NDA_VLAN) r.vlan = v.getUint16(off, HOST_LE);
  });
  return r;
}

export function parseAddr(buf: Uint8Array, m: MessageRef): AddrReply {
  if (m.type !== RTM_NEWADDR) throw new MalformedMessageError(`type ${m.type} where RTM_NEWADDR was expected`);
  requirePayload(m, 8, "ifaddrmsg");
  const v = view(buf);
  const r: AddrReply = { family: v.getUint8(m.start), scope: v.getUint8(m.start + 3), ifindex: v.getUint32(m.start + 4, HOST_LE), address: null };
  eachAttr(v, m.start + 8, m.end, (type, off, len) => {
    if (type === IFA_ADDRESS) r.address = buf.slice(off, off + len);
  });
  return r;
}

/** A dumped route's destination and every output interface, multipath next hops included. */
export function parseRouteOifs(buf: Uint8Array, m: MessageRef): { family: number; type: number; table: number; dst: Uint8Array | null; dstLen: number; oifs: number[] } {
  if (m.type !== RTM_NEWROUTE) throw new MalformedMessageError(`type ${m.type} where RTM_NEWROUTE was expected`);
  requirePayload(m, 12, "rtmsg");
  const v = view(buf);
  const r = {
    family: v.getUint8(m.start), dstLen: v.getUint8(m.start + 1), table: v.getUint8(m.start + 4),
    type: v.getUint8(m.start + 7), dst: null as Uint8Array | null, oifs: [] as number[],
  };
  eachAttr(v, m.start + 12, m.end, (type, off, len) => {
    if (type === RTA_TABLE) r.table = v.getUint32(off, HOST_LE);
    else if (type === RTA_OIF) r.oifs.push(v.getUint32(off, HOST_LE));
    else if (type === RTA_DST) r.dst = addr16(buf, off, len);
    else if (type === RTA_MULTIPATH) {
      for (let nh = off; nh + 8 <= off + len; ) {
        const nhLen = v.getUint16(nh, HOST_LE);
        if (nhLen < 8 || nh + nhLen > off + len) throw new MalformedMessageError(`rtnexthop length ${nhLen}`);
        r.oifs.push(v.getInt32(nh + 4, HOST_LE));
        nh += align4(nhLen);
      }
    }
  });
  return r;
}

/** NETCONFA_FORWARDING of a netconf reply, null when the reply does not carry it. */
export function parseNetconfForwarding(buf: Uint8Array, m: MessageRef): number | null {
  if (m.type !== RTM_NEWNETCONF) throw new MalformedMessageError(`type ${m.type} where RTM_NEWNETCONF was expected`);
  requirePayload(m, 1, "netconfmsg");
  const v = view(buf);
  let forwarding: number | null = null;
  eachAttr(v, m.start + 4, m.end, (type, off) => {
    if (type === NETCONFA_FORWARDING) forwarding = v.getInt32(off, HOST_LE);
  });
  return forwarding;
}
