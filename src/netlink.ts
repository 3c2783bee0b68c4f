// rtnetlink messages as pure functions over byte buffers: request builders write into a caller's
// buffer and return the length; parsers read a received buffer. Layouts are those of the uapi
// headers linux/netlink.h, rtnetlink.h, neighbour.h, if_link.h and netconf.h. Netlink uses host
// byte order, except RTA_SPORT/RTA_DPORT (big endian) and addresses (network order).
import { AF_INET } from "./abi.ts";

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export const NLMSG_ERROR = 2;
export const RTM_NEWLINK = 16;
export const RTM_GETLINK = 18;
export const RTM_NEWROUTE = 24;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_GETNEIGH = 30;
export const RTM_NEWNETCONF = 80;
export const RTM_GETNETCONF = 82;

const NLM_F_REQUEST = 0x1;
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
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
export const ARPHRD_ETHER = 1;
const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;

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

export interface LinkInfo {
  ifindex: number;
  name: string;
  mac: Uint8Array;
  mtu: number;
  /** ARPHRD_* (ARPHRD_ETHER = 1). */
  type: number;
  /** IFLA_INFO_KIND ("bridge", "veth", "vlan", ...), null for plain hardware devices. */
  kind: string | null;
  /** IFF_UP and IFF_RUNNING (administratively up with carrier). */
  up: boolean;
  /** ifindex of the master device (bridge, bond, VRF), 0 when none. */
  master: number;
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

export function parseLink(buf: Uint8Array, m: MessageRef): LinkInfo {
  if (m.type !== RTM_NEWLINK) throw new MalformedMessageError(`type ${m.type} where RTM_NEWLINK was expected`);
  requirePayload(m, 16, "ifinfomsg");
  const v = view(buf);
  const flags = v.getUint32(m.start + 8, HOST_LE);
  const link: LinkInfo = {
    ifindex: v.getInt32(m.start + 4, HOST_LE), name: "", mac: new Uint8Array(0), mtu: 0,
    type: v.getUint16(m.start + 2, HOST_LE), kind: null,
    up: (flags & (IFF_UP | IFF_RUNNING)) === (IFF_UP | IFF_RUNNING), master: 0,
  };
  eachAttr(v, m.start + 16, m.end, (type, off, len) => {
    if (type === IFLA_IFNAME) link.name = cstring(buf, off, len);
    else if (type === IFLA_ADDRESS) link.mac = buf.slice(off, off + len);
    else if (type === IFLA_MTU) link.mtu = v.getUint32(off, HOST_LE);
    else if (type === IFLA_MASTER) link.master = v.getUint32(off, HOST_LE);
    else if (type === IFLA_LINKINFO) {
      eachAttr(v, off, off + len, (info, ioff, ilen) => {
        if (info === IFLA_INFO_KIND) link.kind = cstring(buf, ioff, ilen);
      });
    }
  });
  return link;
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
