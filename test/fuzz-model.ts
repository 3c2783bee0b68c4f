// The fuzzer's reference model of the datapath: what a frame arriving on a device must become,
// worked out in TypeScript from the header formats (IEEE 802.1Q, RFC 2516, RFC 791, RFC 8200,
// RFC 793, RFC 768, the kernel's DSA tag formats) and the policy documented in README.md and
// bpf/flow_abi.h, not from bpf/offload.bpf.c. Every rejection is a plain "pass", so the order of
// the checks does not matter; checksums of a forwarded frame are summed over the whole packet.
import {
  AF_INET,
  AF_INET6,
  DSA_TAGGERS,
  DSA_TAG_BRCM,
  DSA_TAG_BRCM_PREPEND,
  DSA_TAG_DSA,
  DSA_TAG_EDSA,
  DSA_TAG_GSWIP,
  DSA_TAG_MTK,
  DSA_TAG_NONE,
  DSA_TAG_QCA,
  DSA_TAG_RTL8_4,
  FLOW_ACT_DROP,
  FLOW_ACT_TC_ONLY,
  FLOW_VLAN_8021AD,
  FLOW_VLAN_VID_MASK,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type FlowAction,
  type FlowKey,
} from "../src/abi.ts";
import { ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ETH_P_PPP_SES, PPP_IP, PPP_IPV6, dsaTx, hex, type DsaTagger } from "./packet.ts";

export type HookName = "xdp" | "tc";

/** The device the program is attached to: its DSA tagger (load-time params) and user ports. */
export interface Conduit {
  tagger: number;
  ports: number;
}

/** What the model learnt about an acceptable frame. */
export interface Parsed {
  key: FlowKey;
  /** The Ethernet header's destination and source MACs (behind a prepended DSA tag). */
  dmac: Uint8Array;
  smac: Uint8Array;
  l3Off: number;
  l3Len: number;
  /** IP header length (20 or 40): where the L4 header starts within the L3 packet. */
  ipHdrLen: number;
  /** IP + TCP/UDP header bytes (what every GSO segment repeats). */
  hdrLen: number;
  ttl: number;
  finOrRst: boolean;
  syn: boolean;
}

export type ParseResult = { ok: true; p: Parsed } | { ok: false; reason: string };

export type Outcome =
  | { verdict: "pass"; reason: string }
  | { verdict: "drop"; reason: string }
  | { verdict: "tx" | "redirect"; frame: Uint8Array; l2Len: number; l3Len: number; mtu: number; gsoSize: number };

const u16 = (b: Uint8Array, off: number): number => (b[off]! << 8) | b[off + 1]!;

export const TAGGER_NAMES = new Map<number, DsaTagger>(Object.entries(DSA_TAGGERS).map(([n, v]) => [v, n as DsaTagger]));

// ---- DSA receive formats (net/dsa/tag_*.c): the source port, or null for a frame the tagger
// would not hand to a user port as ordinary traffic. ----

/** Bytes before the destination MAC (prepend taggers) or after the source MAC, on receive. */
function rxTagLen(tagger: number): { prepend: number; after: number } {
  switch (tagger) {
    case DSA_TAG_BRCM_PREPEND:
      return { prepend: 4, after: 0 };
    case DSA_TAG_GSWIP:
      return { prepend: 8, after: 0 };
    case DSA_TAG_QCA:
      return { prepend: 0, after: 2 };
    case DSA_TAG_MTK:
    case DSA_TAG_BRCM:
    case DSA_TAG_DSA:
      return { prepend: 0, after: 4 };
    case DSA_TAG_EDSA:
    case DSA_TAG_RTL8_4:
      return { prepend: 0, after: 8 };
    default:
      return { prepend: 0, after: 0 };
  }
}

/** Marvell DSA: only FORWARD (3), untagged, from device 0, not from a trunk. */
function marvellPort(t: Uint8Array, o: number): number | null {
  const cmd = t[o]! >> 6;
  const tagged = (t[o]! & 0x20) !== 0;
  const dev = t[o]! & 0x1f;
  const trunk = (t[o + 1]! & 0x04) !== 0;
  if (cmd !== 3 || tagged || dev !== 0 || trunk) return null;
  return t[o + 1]! >> 3;
}

function rxPort(tagger: number, t: Uint8Array, o: number): number | null {
  switch (tagger) {
    case DSA_TAG_MTK: // source port in bits 2-0 of the first word
      return t[o + 1]! & 0x07;
    case DSA_TAG_QCA: {
      const hdr = u16(t, o); // version 2 in 15-14, type 0 ("normal") in 10-6, port in 2-0
      if (hdr >> 14 !== 2 || ((hdr >> 6) & 0x1f) !== 0) return null;
      return hdr & 0x07;
    }
    case DSA_TAG_BRCM:
    case DSA_TAG_BRCM_PREPEND: // egress opcode 0, no reserved reason code, port in byte 3
      if (t[o]! >> 5 !== 0 || (t[o + 2]! & 0xc0) !== 0) return null;
      return t[o + 3]! & 0x1f;
    case DSA_TAG_GSWIP: // SPPID in bits 6-4 of byte 7
      return (t[o + 7]! >> 4) & 0x07;
    case DSA_TAG_DSA:
      return marvellPort(t, o);
    case DSA_TAG_EDSA: // ethertype 0xdada, two reserved bytes, then a DSA tag
      if (u16(t, o) !== 0xdada) return null;
      return marvellPort(t, o + 4);
    case DSA_TAG_RTL8_4: // ethertype 0x8899, protocol 4, port in bits 3-0 of the last word
      if (u16(t, o) !== 0x8899 || t[o + 2] !== 0x04) return null;
      return t[o + 7]! & 0x0f;
    default:
      return null;
  }
}

// ---- Ingress ----

const reject = (reason: string): ParseResult => ({ ok: false, reason });

/** The frame as the datapath must read it; reasons name the first problem found. */
export function parseIngress(f: Uint8Array, conduit: Conduit, ifindex: number): ParseResult {
  const n = f.length;
  const tag = rxTagLen(conduit.tagger);
  let dsaPort = 0;
  const checkPort = (port: number | null): boolean => {
    if (port === null || port > 31 || ((conduit.ports >>> port) & 1) === 0) return false;
    dsaPort = port + 1;
    return true;
  };
  let pos = 0;
  if (tag.prepend) {
    if (n < tag.prepend) return reject("truncated DSA tag");
    if (!checkPort(rxPort(conduit.tagger, f, 0))) return reject("DSA tag: not an ordinary frame from a user port");
    pos = tag.prepend;
  }
  if (n < pos + 14) return reject("truncated Ethernet header");
  // The forwarding path only takes unicast frames; whether one is for this router (PACKET_HOST)
  // or another host (PACKET_OTHERHOST) is up to the flow's action (ModelState.decide).
  if (f[pos]! & 1) return reject("multicast or broadcast destination");
  const dmac = f.slice(pos, pos + 6);
  const smac = f.slice(pos + 6, pos + 12);
  pos += 12;
  if (tag.after) {
    if (n < pos + tag.after + 2) return reject("truncated DSA tag");
    if (!checkPort(rxPort(conduit.tagger, f, pos))) return reject("DSA tag: not an ordinary frame from a user port");
    pos += tag.after;
  }
  let etype = u16(f, pos);
  pos += 2;
  const vlan: [number, number] = [0, 0];
  let tags = 0;
  while (etype === ETH_P_8021Q || etype === ETH_P_8021AD) {
    if (tags === 2) return reject("a third VLAN tag");
    if (n < pos + 4) return reject("truncated VLAN tag");
    const vid = u16(f, pos) & FLOW_VLAN_VID_MASK;
    // VID 0 is a priority tag (the frame counts as untagged), 4095 is reserved.
    if (vid === 0 || vid === 4095) return reject(`VLAN VID ${vid}`);
    vlan[tags++] = vid | (etype === ETH_P_8021AD ? FLOW_VLAN_8021AD : 0);
    etype = u16(f, pos + 2);
    pos += 4;
  }
  let pppoeSid = 0;
  let pppoeLen = -1;
  if (etype === ETH_P_PPP_SES) {
    // RFC 2516: ver 1, type 1, code 0 in the session stage; session 0xffff is reserved and 0
    // is no session to the flow key. (pppoe_rcv also wants the peer's source MAC: the action's
    // ingress source MAC, checked in ModelState.decide.)
    if (n < pos + 8) return reject("truncated PPPoE header");
    if (f[pos] !== 0x11 || f[pos + 1] !== 0) return reject("PPPoE: not a version 1 session frame");
    pppoeSid = u16(f, pos + 2);
    if (pppoeSid === 0 || pppoeSid === 0xffff) return reject(`PPPoE session ${pppoeSid}`);
    pppoeLen = u16(f, pos + 4);
    const proto = u16(f, pos + 6);
    if (proto === PPP_IP) etype = ETH_P_IP;
    else if (proto === PPP_IPV6) etype = ETH_P_IPV6;
    else return reject(`PPP protocol 0x${proto.toString(16)}`);
    pos += 8;
  }
  const l3Off = pos;
  const room = n - l3Off;
  let family: number, proto: number, l3Len: number, ipHdrLen: number, ttl: number;
  const saddr = new Uint8Array(16);
  const daddr = new Uint8Array(16);
  if (etype === ETH_P_IP) {
    if (room < 20) return reject("truncated IPv4 header");
    // Options are processed by the forwarding path (record route, router alert ...).
    if (f[l3Off] !== 0x45) return reject("IPv4 version/IHL not 4/5");
    if (u16(f, l3Off + 6) & 0x3fff) return reject("IPv4 fragment");
    if (foldSum(sumWords(f, l3Off, l3Off + 20)) !== 0xffff) return reject("IPv4 header checksum");
    l3Len = u16(f, l3Off + 2);
    // Longer than the frame: truncated (ip_rcv drops it); shorter: Ethernet padding.
    if (l3Len < 20 || l3Len > room) return reject("IPv4 total length");
    family = AF_INET;
    ipHdrLen = 20;
    ttl = f[l3Off + 8]!;
    proto = f[l3Off + 9]!;
    saddr.set(f.subarray(l3Off + 12, l3Off + 16));
    daddr.set(f.subarray(l3Off + 16, l3Off + 20));
  } else if (etype === ETH_P_IPV6) {
    if (room < 40) return reject("truncated IPv6 header");
    if (f[l3Off]! >> 4 !== 6) return reject("IPv6 version");
    const payload = u16(f, l3Off + 4);
    // 0: a jumbogram (RFC 2675).
    if (payload === 0 || 40 + payload > room) return reject("IPv6 payload length");
    family = AF_INET6;
    ipHdrLen = 40;
    l3Len = 40 + payload;
    proto = f[l3Off + 6]!;
    ttl = f[l3Off + 7]!;
    saddr.set(f.subarray(l3Off + 8, l3Off + 24));
    daddr.set(f.subarray(l3Off + 24, l3Off + 40));
  } else {
    return reject(`ethertype 0x${etype.toString(16)}`);
  }
  // Any extension header (or another protocol) is the stack's.
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return reject(`L4 protocol ${proto}`);
  // pppoe_rcv trims to the length field, ip_rcv drops what is then too short: only an exact
  // length is unambiguous.
  if (pppoeLen >= 0 && pppoeLen !== l3Len + 2) return reject("PPPoE length does not match the IP packet");
  const l4 = l3Off + ipHdrLen;
  const l4Len = l3Len - ipHdrLen;
  let hdrLen = ipHdrLen;
  let finOrRst = false;
  let syn = false;
  if (proto === IPPROTO_TCP) {
    if (l4Len < 20) return reject("TCP header beyond the IP packet");
    const doff = (f[l4 + 12]! >> 4) * 4;
    if (doff < 20 || doff > l4Len) return reject(`TCP data offset ${doff}`);
    hdrLen += doff;
    const flags = f[l4 + 13]!;
    finOrRst = (flags & 0x05) !== 0;
    syn = (flags & 0x02) !== 0;
  } else {
    if (l4Len < 8) return reject("UDP header beyond the IP packet");
    if (u16(f, l4 + 4) !== l4Len) return reject("UDP length does not match the IP payload");
    // RFC 8200 8.1: over IPv6 a zero UDP checksum is invalid.
    if (family === AF_INET6 && u16(f, l4 + 6) === 0) return reject("UDP over IPv6 without checksum");
    hdrLen += 8;
  }
  return {
    ok: true,
    p: {
      key: {
        ifindex,
        family,
        proto,
        dsaPort,
        vlan,
        pppoeSid,
        sport: u16(f, l4),
        dport: u16(f, l4 + 2),
        saddr,
        daddr,
      },
      dmac,
      smac,
      l3Off,
      l3Len,
      ipHdrLen,
      hdrLen,
      ttl,
      finOrRst,
      syn,
    },
  };
}

/** The raw source-port field of each receive format, whatever the rest of the tag says. */
function rawRxPort(tagger: number, t: Uint8Array, o: number): number {
  switch (tagger) {
    case DSA_TAG_MTK:
    case DSA_TAG_QCA:
      return t[o + 1]! & 0x07;
    case DSA_TAG_BRCM:
    case DSA_TAG_BRCM_PREPEND:
      return t[o + 3]! & 0x1f;
    case DSA_TAG_GSWIP:
      return (t[o + 7]! >> 4) & 0x07;
    case DSA_TAG_DSA:
      return t[o + 1]! >> 3;
    case DSA_TAG_EDSA:
      return t[o + 5]! >> 3;
    default:
      return t[o + 7]! & 0x0f;
  }
}

/**
 * The key a careless parser would make of a frame: the same walk with every validity check left
 * out (DSA port and tag type, multicast, VID 0 and 4095, PPPoE header and length, IP version,
 * IHL, fragments, checksum, lengths, extension headers, TCP/UDP header sanity). A flow installed
 * under it turns a missing check in the datapath into a wrong verdict the fuzzer sees. Null
 * when even a careless parser finds no addresses and ports.
 */
export function carelessKey(f: Uint8Array, conduit: Conduit, ifindex: number): FlowKey | null {
  const n = f.length;
  const tag = rxTagLen(conduit.tagger);
  let dsaPort = 0;
  let pos = 0;
  if (tag.prepend) {
    if (n < tag.prepend) return null;
    dsaPort = rawRxPort(conduit.tagger, f, 0) + 1;
    pos = tag.prepend;
  }
  pos += 12;
  if (tag.after) {
    if (n < pos + tag.after) return null;
    dsaPort = rawRxPort(conduit.tagger, f, pos) + 1;
    pos += tag.after;
  }
  if (n < pos + 2) return null;
  let etype = u16(f, pos);
  pos += 2;
  const vlan: [number, number] = [0, 0];
  for (let i = 0; i < 2 && (etype === ETH_P_8021Q || etype === ETH_P_8021AD) && n >= pos + 4; i++) {
    vlan[i] = (u16(f, pos) & FLOW_VLAN_VID_MASK) | (etype === ETH_P_8021AD ? FLOW_VLAN_8021AD : 0);
    etype = u16(f, pos + 2);
    pos += 4;
  }
  let pppoeSid = 0;
  if (etype === ETH_P_PPP_SES && n >= pos + 9) {
    pppoeSid = u16(f, pos + 2);
    pos += 8;
    etype = f[pos]! >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
  }
  const v4 = etype === ETH_P_IP;
  if (!v4 && etype !== ETH_P_IPV6) return null;
  const l4 = pos + (v4 ? 20 : 40);
  if (n < l4 + 4) return null;
  const saddr = new Uint8Array(16);
  const daddr = new Uint8Array(16);
  saddr.set(v4 ? f.subarray(pos + 12, pos + 16) : f.subarray(pos + 8, pos + 24));
  daddr.set(v4 ? f.subarray(pos + 16, pos + 20) : f.subarray(pos + 24, pos + 40));
  return {
    ifindex,
    family: v4 ? AF_INET : AF_INET6,
    proto: f[pos + (v4 ? 9 : 6)]!,
    dsaPort,
    vlan,
    pppoeSid,
    sport: u16(f, l4),
    dport: u16(f, l4 + 2),
    saddr,
    daddr,
  };
}

/** A flow key as a map key. */
export function keyId(k: FlowKey): string {
  return `${k.ifindex}/${k.family}/${k.proto}/${k.dsaPort}/${k.vlan[0]}.${k.vlan[1]}/${k.pppoeSid}/${k.sport}>${k.dport}/${hex(k.saddr)}>${hex(k.daddr)}`;
}

// ---- Egress ----

/** The highest switch port each tagger's transmit format can address. */
const TX_MAX_PORT: Readonly<Record<number, number>> = {
  [DSA_TAG_MTK]: 5, // port bitmap in bits 5-0
  [DSA_TAG_QCA]: 6, // port bitmap in bits 6-0
  [DSA_TAG_BRCM]: 8, // 9-bit destination map
  [DSA_TAG_BRCM_PREPEND]: 8,
  [DSA_TAG_GSWIP]: 5, // port map in bits 6-1
  [DSA_TAG_DSA]: 31, // 5-bit port
  [DSA_TAG_EDSA]: 31,
  [DSA_TAG_RTL8_4]: 10, // 11-bit port mask
};

/** Broadcom switches drop runts once the tag is stripped: the tagger pads to 64 bytes first. */
const BRCM_MIN_UNTAGGED = 64;

function vlanTagValid(tag: number): boolean {
  const vid = tag & FLOW_VLAN_VID_MASK;
  return vid !== 0 && vid !== 4095 && (tag & ~(FLOW_VLAN_VID_MASK | FLOW_VLAN_8021AD)) === 0;
}

/**
 * TC carries a QinQ outer tag as skb metadata (not behind a DSA tag), which a test run does not
 * show; XDP writes it into the frame, so the action's MTU allows it 4 bytes less.
 */
function outerTagInMeta(a: FlowAction, hook: HookName): boolean {
  return hook === "tc" && a.egressVlan[0] !== 0 && a.egressVlan[1] !== 0 && (a.egressDsaTagger ?? DSA_TAG_NONE) === DSA_TAG_NONE;
}

function hookMtu(a: FlowAction, hook: HookName): number {
  const qinq = a.egressVlan[0] !== 0 && a.egressVlan[1] !== 0 && (a.egressDsaTagger ?? DSA_TAG_NONE) === DSA_TAG_NONE;
  return hook === "xdp" && qinq ? Math.max(0, a.mtu - 4) : a.mtu;
}

/**
 * The egress L2 header for an IP packet of l3Len bytes, outermost first on the wire: DSA tag,
 * VLAN tags (PCP 0, DEI 0), PPPoE session with its length; or why the action cannot be sent.
 * The frame as the hook's program leaves it (see outerTagInMeta).
 */
export function egressL2(a: FlowAction, family: number, l3Len: number, hook: HookName): Uint8Array | string {
  const [outer, inner] = a.egressVlan;
  const outerInMeta = outerTagInMeta(a, hook);
  if (outer && !vlanTagValid(outer)) return "egress outer VLAN tag invalid";
  if (inner && (!outer || !vlanTagValid(inner))) return "egress inner VLAN tag invalid or without an outer one";
  if (a.egressPppoeSid === 0xffff) return "egress PPPoE session 0xffff";
  const tagger = a.egressDsaTagger ?? DSA_TAG_NONE;
  const port = a.egressDsaPort ?? 0;
  if (tagger !== DSA_TAG_NONE && (TX_MAX_PORT[tagger] === undefined || port > TX_MAX_PORT[tagger]!)) {
    return `egress DSA tagger ${tagger} port ${port} not expressible`;
  }
  const ip4 = family === AF_INET;
  let after: number[];
  if (a.egressPppoeSid) {
    const len = l3Len + 2; // RFC 2516: PPP protocol field + payload
    after = [ETH_P_PPP_SES >> 8, ETH_P_PPP_SES & 0xff, 0x11, 0, a.egressPppoeSid >> 8, a.egressPppoeSid & 0xff, len >> 8, len & 0xff];
    after.push(...(ip4 ? [PPP_IP >> 8, PPP_IP & 0xff] : [PPP_IPV6 >> 8, PPP_IPV6 & 0xff]));
  } else {
    const et = ip4 ? ETH_P_IP : ETH_P_IPV6;
    after = [et >> 8, et & 0xff];
  }
  for (const t of outerInMeta ? [inner] : [inner, outer]) {
    if (!t) continue;
    const tpid = t & FLOW_VLAN_8021AD ? ETH_P_8021AD : ETH_P_8021Q;
    const vid = t & FLOW_VLAN_VID_MASK;
    after = [tpid >> 8, tpid & 0xff, vid >> 8, vid & 0xff, ...after];
  }
  let prefix: number[] = [];
  if (tagger !== DSA_TAG_NONE) {
    if (2 * 6 + after.length + l3Len < BRCM_MIN_UNTAGGED && (tagger === DSA_TAG_BRCM || tagger === DSA_TAG_BRCM_PREPEND)) {
      return "shorter than a Broadcom switch takes (the tagger pads it)";
    }
    const outerTpid = outer ? (outer & FLOW_VLAN_8021AD ? ETH_P_8021AD : ETH_P_8021Q) : undefined;
    const e = dsaTx(TAGGER_NAMES.get(tagger)!, port, outerTpid, outer & FLOW_VLAN_VID_MASK);
    if (e.kind !== "dsa") throw new Error("dsaTx returned no tag");
    if (e.prepend) prefix = Array.from(e.tag);
    else after = [...e.tag, ...after.slice(e.absorb ?? 0)];
  }
  return new Uint8Array([...prefix, ...a.dmac, ...a.smac, ...after]);
}

// ---- Checksums (RFC 1071), summed over whole headers and segments ----

/** Sum of the big-endian 16-bit words of b[start, end) (an odd last byte padded), unfolded. */
export function sumWords(b: Uint8Array, start: number, end: number): number {
  let s = 0;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return s;
}

/** One's-complement fold to 16 bits; a positive sum never folds to 0. */
export function foldSum(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

const add1c = (a: number, b: number): number => foldSum(a + b);

/** The pseudo-header (RFC 768 / RFC 8200 8.1) plus the L4 segment, its checksum word left out. */
function l4SumWithoutChecksum(l3: Uint8Array, family: number, proto: number, ipHdrLen: number, csOff: number): number {
  const l4Len = l3.length - ipHdrLen;
  const addrs = family === AF_INET ? sumWords(l3, 12, 20) : sumWords(l3, 8, 40);
  const pseudo = addrs + proto + (l4Len & 0xffff) + Math.floor(l4Len / 0x10000);
  return foldSum(pseudo + sumWords(l3, ipHdrLen, l3.length) - u16(l3, csOff));
}

/**
 * The forwarded L4 checksum: a valid one is the full recomputation over the new packet; an
 * invalid one keeps its error (a router must not launder a corrupted segment), i.e. the new
 * packet's sum differs from 0xffff exactly as the old one did. UDP over IPv4 without checksum
 * (0) keeps 0, and a UDP checksum that comes out 0 is sent as 0xffff (RFC 768).
 */
function forwardedL4Checksum(inL3: Uint8Array, outL3: Uint8Array, family: number, proto: number, ipHdrLen: number): number {
  const udp = proto === IPPROTO_UDP;
  const csOff = ipHdrLen + (udp ? 6 : 16);
  const cin = u16(inL3, csOff);
  if (udp && cin === 0) return 0; // over IPv6 such a packet never gets here
  const sIn = l4SumWithoutChecksum(inL3, family, proto, ipHdrLen, csOff);
  const sOut = l4SumWithoutChecksum(outL3, family, proto, ipHdrLen, csOff);
  const c = ~add1c(add1c(~cin & 0xffff, sOut), ~sIn & 0xffff) & 0xffff;
  return udp && c === 0 ? 0xffff : c;
}

/** The forwarded IP packet: NAT, TTL / hop limit - 1, checksums. */
function rewriteL3(inL3: Uint8Array, p: Parsed, a: FlowAction): Uint8Array {
  const out = inL3.slice();
  const v4 = p.key.family === AF_INET;
  if (v4) {
    out.set(a.saddr.subarray(0, 4), 12);
    out.set(a.daddr.subarray(0, 4), 16);
    out[8] = p.ttl - 1;
    out[10] = out[11] = 0;
    const c = ~foldSum(sumWords(out, 0, 20)) & 0xffff;
    out[10] = c >> 8;
    out[11] = c & 0xff;
  } else {
    out.set(a.saddr.subarray(0, 16), 8);
    out.set(a.daddr.subarray(0, 16), 24);
    out[7] = p.ttl - 1;
  }
  const l4 = p.ipHdrLen;
  out[l4] = a.sport >> 8;
  out[l4 + 1] = a.sport & 0xff;
  out[l4 + 2] = a.dport >> 8;
  out[l4 + 3] = a.dport & 0xff;
  const csOff = l4 + (p.key.proto === IPPROTO_UDP ? 6 : 16);
  const c = forwardedL4Checksum(inL3, out, p.key.family, p.key.proto, p.ipHdrLen);
  out[csOff] = c >> 8;
  out[csOff + 1] = c & 0xff;
  return out;
}

/**
 * Whether the L4 checksum field holds the folded pseudo-header sum alone: what a sender with
 * checksum offload leaves for its device in a CHECKSUM_PARTIAL packet (Linux writes
 * ~tcp_v4_check(len, saddr, daddr, 0) and the like). A sum of nonzero words never folds to 0,
 * so UDP's "no checksum" never looks partial.
 */
export function holdsPseudoSum(l3: Uint8Array, family: number, proto: number, ipHdrLen: number): boolean {
  const csOff = ipHdrLen + (proto === IPPROTO_UDP ? 6 : 16);
  const l4Len = l3.length - ipHdrLen;
  const addrs = family === AF_INET ? sumWords(l3, 12, 20) : sumWords(l3, 8, 40);
  return foldSum(addrs + proto + l4Len) === u16(l3, csOff);
}

/** Residue of the L4 checksum of an IP packet: 0xffff when it verifies (UDP/IPv4 0 counts). */
export function l4Residue(l3: Uint8Array, family: number, proto: number, ipHdrLen: number): number {
  const csOff = ipHdrLen + (proto === IPPROTO_UDP ? 6 : 16);
  if (proto === IPPROTO_UDP && family === AF_INET && u16(l3, csOff) === 0) return 0xffff;
  return add1c(l4SumWithoutChecksum(l3, family, proto, ipHdrLen, csOff), u16(l3, csOff));
}

// ---- The flow table and the decision ----

/** An ingress MAC of an action against the frame's: absent or all zero matches anything. */
function macMatches(want: Uint8Array | undefined, got: Uint8Array): boolean {
  const w = Array.from({ length: 6 }, (_, i) => want?.[i] ?? 0);
  return w.every((b) => b === 0) || w.every((b, i) => b === got[i]);
}

export interface DirCount {
  packets: number;
  bytes: number;
}

/** The model's copy of the maps: installed flows, and per-connection state and counters. */
export class ModelState {
  readonly flows = new Map<string, FlowAction>();
  readonly closing = new Set<number>();
  readonly counts = new Map<number, [DirCount, DirCount]>();

  constructor(
    readonly conduit: Conduit,
    readonly ifindex: number,
    /** flow_stats max_entries: a conn_id at or beyond it has no slot. */
    readonly statsSlots: number,
    /** false: the daemon's heartbeat is stale, and every packet goes to the stack. */
    readonly alive = true,
  ) {}

  install(key: FlowKey, action: FlowAction): void {
    this.flows.set(keyId(key), action);
    this.closing.delete(action.connId);
    this.counts.delete(action.connId);
  }

  private count(a: FlowAction, l3Len: number): void {
    let c = this.counts.get(a.connId);
    if (!c) {
      c = [
        { packets: 0, bytes: 0 },
        { packets: 0, bytes: 0 },
      ];
      this.counts.set(a.connId, c);
    }
    const d = c[a.dir & 1]!;
    d.packets++;
    d.bytes += l3Len;
  }

  /** What the program on `hook` must do with frame, updating the connection state as it would. */
  decide(frame: Uint8Array, hook: HookName, gsoSize: number): Outcome {
    const pass = (reason: string): Outcome => ({ verdict: "pass", reason });
    if (!this.alive) return pass("daemon heartbeat stale");
    const r = parseIngress(frame, this.conduit, this.ifindex);
    if (!r.ok) return pass(r.reason);
    const p = r.p;
    const a = this.flows.get(keyId(p.key));
    if (!a) return pass("no flow");
    // flow_abi.h: a frame must carry the action's ingress MACs, unless they are all zero; else
    // the kernel decides (ip_rcv drops PACKET_OTHERHOST, a bridge forwards it; pppoe_rcv knows
    // the session only from its peer). Before everything else: such a frame is not the flow's.
    if (!macMatches(a.ingressDmac, p.dmac)) return pass("unicast for another MAC than the action's");
    if (!macMatches(a.ingressSmac, p.smac)) return pass("source MAC not the action's (PPPoE peer)");
    if (hook === "xdp" && a.flags & FLOW_ACT_TC_ONLY) return pass("TC-only flow on XDP");
    const slot = a.connId < this.statsSlots;
    if (a.flags & FLOW_ACT_DROP) {
      if (slot) this.count(a, p.l3Len);
      return { verdict: "drop", reason: "FLOW_ACT_DROP" };
    }
    if (!slot) return pass("conn_id without a stats slot");
    if (this.closing.has(a.connId)) return pass("connection closing");
    if (p.finOrRst) {
      this.closing.add(a.connId);
      return pass("FIN or RST: connection closing");
    }
    if (p.syn) return pass("SYN on an offloaded flow");
    if (p.ttl <= 1) return pass("TTL / hop limit would expire");
    // A GSO packet is cut into segments of hdrLen + gsoSize on egress: those must fit.
    const mtu = hookMtu(a, hook);
    if (p.l3Len > mtu && (!gsoSize || p.hdrLen + gsoSize > mtu)) return pass("larger than the egress MTU");
    const l2 = egressL2(a, p.key.family, p.l3Len, hook);
    if (typeof l2 === "string") return pass(l2);
    // Segmenting would copy one PPPoE length onto every segment.
    if (gsoSize && a.egressPppoeSid) return pass("GSO packet to a PPPoE egress");
    const inL3 = frame.subarray(p.l3Off, p.l3Off + p.l3Len);
    // XDP cannot see skb->ip_summed: a field that may be a CHECKSUM_PARTIAL packet's would be
    // patched as if complete. The stack completes it (and, by a 1-in-65536 chance, forwards a
    // complete checksum that merely looks partial).
    if (hook === "xdp" && holdsPseudoSum(inL3, p.key.family, p.key.proto, p.ipHdrLen)) return pass("L4 checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL)");
    this.count(a, p.l3Len);
    const l3 = rewriteL3(inL3, p, a);
    const out = new Uint8Array(l2.length + l3.length);
    out.set(l2);
    out.set(l3, l2.length);
    const tx = hook === "xdp" && a.outIfindex === this.ifindex;
    return { verdict: tx ? "tx" : "redirect", frame: out, l2Len: l2.length, l3Len: p.l3Len, mtu, gsoSize };
  }
}
