// A small packet builder and parser for tests: Ethernet + IPv4/IPv6 + TCP/UDP frames with chosen
// fields. Every checksum is computed by full recomputation (RFC 1071), never incrementally, so a
// frame built here is an independent reference for what the datapath's incremental updates must
// produce. Independent of src/ on purpose.

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_8021AD = 0x88a8;
export const ETH_P_PPP_DISC = 0x8863;
export const ETH_P_PPP_SES = 0x8864;
export const PPP_IP = 0x0021;
export const PPP_IPV6 = 0x0057;
export const PPP_LCP = 0xc021;
export const ETH_HLEN = 14;

export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

/** IPv6 next-header values of extension headers this builder can insert. */
export const IPV6_HOPOPTS = 0;
export const IPV6_DSTOPTS = 60;

/**
 * An encapsulation header between the source MAC and the IP packet, listed outermost first in
 * FrameSpec.encap. A DSA tag sits right after the source MAC (or, prepend, before the
 * destination MAC); absorb: the tag takes the place of that many bytes of the header after it
 * (a tagger that merges its tag with a VLAN tag).
 */
export type Encap =
  | { kind: "vlan"; vid: number; tpid?: number; pcp?: number }
  | {
      kind: "pppoe";
      sid: number;
      /** Defaults: ethertype 0x8864, ver/type 0x11, code 0, length = PPP protocol + IP packet. */
      ethertype?: number;
      verType?: number;
      code?: number;
      length?: number;
      /** Default: PPP_IP or PPP_IPV6 for the packet's family. */
      pppProto?: number;
    }
  | { kind: "dsa"; tag: Uint8Array; prepend?: boolean; absorb?: number }
  /** Raw bytes after the source MAC, before everything else (e.g. an LLC header with its length). */
  | { kind: "raw"; bytes: Uint8Array };

export interface FrameSpec {
  /** Encapsulation headers, outermost first; default none (plain Ethernet). */
  encap?: Encap[];
  /** "aa:bb:cc:dd:ee:ff"; defaults 02:00:00:00:00:01 (dst) and 02:00:00:00:00:02 (src). */
  dmac?: string;
  smac?: string;
  /** Defaults to the family's ethertype. */
  ethertype?: number;
  /** Dotted IPv4 or IPv6 text; both must be of the same family, which selects IPv4 or IPv6. */
  src: string;
  dst: string;
  proto: typeof PROTO_TCP | typeof PROTO_UDP;
  sport: number;
  dport: number;
  /** IPv4 TTL or IPv6 hop limit; default 64. */
  ttl?: number;
  /** IPv4 TOS or IPv6 traffic class; default 0. */
  tos?: number;
  /** IPv4 identification; default 0x1234. */
  ipId?: number;
  /** IPv4 don't-fragment bit; default true. */
  df?: boolean;
  /** IPv4 more-fragments bit; default false. */
  mf?: boolean;
  /** IPv4 fragment offset in 8-byte units; default 0. */
  fragOffset?: number;
  /** IPv4 options (padded with end-of-list bytes to a multiple of 4). */
  ipOptions?: Uint8Array;
  /** IPv4 tot_len or IPv6 payload length to write instead of the correct one. */
  ipLength?: number;
  /** IPv4 header checksum to write instead of the correct one. */
  ipChecksum?: number;
  /** IPv6 flow label; default 0. */
  flowLabel?: number;
  /** An IPv6 extension header (8 bytes, PadN-filled) of this type before the L4 header. */
  ipv6Ext?: typeof IPV6_HOPOPTS | typeof IPV6_DSTOPTS;
  /** TCP flags; default ACK. */
  tcpFlags?: number;
  seq?: number;
  ack?: number;
  window?: number;
  /** TCP options (padded with end-of-list bytes to a multiple of 4). */
  tcpOptions?: Uint8Array;
  /** TCP data offset to write instead of the correct one (in 32-bit words). */
  tcpDoff?: number;
  /** UDP length to write instead of the correct one. */
  udpLength?: number;
  /** "none": UDP checksum 0 (no checksum, RFC 768). Default: computed. */
  udpChecksum?: "computed" | "none";
  /**
   * The TCP/UDP checksum field holds only the folded pseudo-header sum, as in a CHECKSUM_PARTIAL
   * packet from a local sender with checksum offload (the device is to complete it).
   */
  partialChecksum?: boolean;
  payload?: Uint8Array;
  /** Trailing bytes after the L3 packet (as Ethernet padding); default 0. */
  padding?: number;
}

/** A 4- or 16-byte address from its text form. */
export function parseIp(text: string): Uint8Array {
  if (!text.includes(":")) {
    const parts = text.split(".").map(Number);
    if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
      throw new RangeError(`bad IPv4 address ${text}`);
    }
    return new Uint8Array(parts);
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new RangeError(`bad IPv6 address ${text}`);
  const words = (s: string | undefined): number[] => (s ? s.split(":").map((w) => parseInt(w, 16)) : []);
  const head = words(halves[0]);
  const tail = words(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  if (all.length !== 8 || all.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) {
    throw new RangeError(`bad IPv6 address ${text}`);
  }
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  return out;
}

/** A 16-byte address as the flow ABI stores it (IPv4 in the first 4 bytes, the rest zero). */
export function addr16(text: string): Uint8Array {
  const out = new Uint8Array(16);
  out.set(parseIp(text));
  return out;
}

export function parseMac(text: string): Uint8Array {
  const bytes = text.split(":").map((b) => parseInt(b, 16));
  if (bytes.length !== 6 || bytes.some((b) => !Number.isInteger(b) || b < 0 || b > 255)) {
    throw new RangeError(`bad MAC address ${text}`);
  }
  return new Uint8Array(bytes);
}

/** Folded one's-complement sum of big-endian 16-bit words (odd last byte padded with 0). */
export function onesSum(data: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i < data.length; i += 2) s += (data[i]! << 8) | (data[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The Internet checksum (RFC 1071) of data: the complement of its one's-complement sum. */
export function internetChecksum(data: Uint8Array, initial = 0): number {
  return ~onesSum(data, initial) & 0xffff;
}

function pseudoHeader(src: Uint8Array, dst: Uint8Array, proto: number, length: number): Uint8Array {
  if (src.length === 4) {
    const p = new Uint8Array(12);
    p.set(src, 0);
    p.set(dst, 4);
    p[9] = proto;
    new DataView(p.buffer).setUint16(10, length);
    return p;
  }
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  new DataView(p.buffer).setUint32(32, length);
  p[39] = proto;
  return p;
}

function padTo4(bytes: Uint8Array | undefined): Uint8Array {
  const b = bytes ?? new Uint8Array(0);
  const out = new Uint8Array(Math.ceil(b.length / 4) * 4);
  out.set(b);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function buildL4(spec: FrameSpec, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const payload = spec.payload ?? new Uint8Array(0);
  if (spec.proto === PROTO_TCP) {
    const options = padTo4(spec.tcpOptions);
    const seg = new Uint8Array(20 + options.length + payload.length);
    const v = new DataView(seg.buffer);
    v.setUint16(0, spec.sport);
    v.setUint16(2, spec.dport);
    v.setUint32(4, spec.seq ?? 0x01020304);
    v.setUint32(8, spec.ack ?? 0x05060708);
    seg[12] = (spec.tcpDoff ?? 5 + options.length / 4) << 4;
    seg[13] = spec.tcpFlags ?? TCP_ACK;
    v.setUint16(14, spec.window ?? 0xfaf0);
    seg.set(options, 20);
    seg.set(payload, 20 + options.length);
    const pseudo = onesSum(pseudoHeader(src, dst, PROTO_TCP, seg.length));
    v.setUint16(16, spec.partialChecksum ? pseudo : internetChecksum(seg, pseudo));
    return seg;
  }
  const seg = new Uint8Array(8 + payload.length);
  const v = new DataView(seg.buffer);
  v.setUint16(0, spec.sport);
  v.setUint16(2, spec.dport);
  v.setUint16(4, spec.udpLength ?? seg.length);
  seg.set(payload, 8);
  if (spec.partialChecksum) {
    v.setUint16(6, onesSum(pseudoHeader(src, dst, PROTO_UDP, seg.length)));
  } else if (spec.udpChecksum !== "none") {
    const c = internetChecksum(seg, onesSum(pseudoHeader(src, dst, PROTO_UDP, seg.length)));
    // RFC 768: a computed zero is transmitted as all ones (0 means "no checksum").
    v.setUint16(6, c === 0 ? 0xffff : c);
  }
  return seg;
}

function buildIpv4(spec: FrameSpec, src: Uint8Array, dst: Uint8Array, l4: Uint8Array): Uint8Array {
  const options = padTo4(spec.ipOptions);
  const hdr = new Uint8Array(20 + options.length);
  const v = new DataView(hdr.buffer);
  hdr[0] = 0x40 | (hdr.length / 4);
  hdr[1] = spec.tos ?? 0;
  v.setUint16(2, spec.ipLength ?? hdr.length + l4.length);
  v.setUint16(4, spec.ipId ?? 0x1234);
  v.setUint16(6, ((spec.df ?? true) ? 0x4000 : 0) | (spec.mf ? 0x2000 : 0) | (spec.fragOffset ?? 0));
  hdr[8] = spec.ttl ?? 64;
  hdr[9] = spec.proto;
  hdr.set(src, 12);
  hdr.set(dst, 16);
  hdr.set(options, 20);
  v.setUint16(10, spec.ipChecksum ?? internetChecksum(hdr));
  return concat(hdr, l4);
}

function buildIpv6(spec: FrameSpec, src: Uint8Array, dst: Uint8Array, l4: Uint8Array): Uint8Array {
  // An 8-byte extension header: next header, length 0 (in 8-byte units beyond the first 8), PadN.
  const ext = spec.ipv6Ext === undefined ? new Uint8Array(0) : new Uint8Array([spec.proto, 0, 1, 4, 0, 0, 0, 0]);
  const hdr = new Uint8Array(40);
  const v = new DataView(hdr.buffer);
  const tc = spec.tos ?? 0;
  v.setUint32(0, ((6 << 28) | (tc << 20) | (spec.flowLabel ?? 0)) >>> 0);
  v.setUint16(4, spec.ipLength ?? ext.length + l4.length);
  hdr[6] = spec.ipv6Ext ?? spec.proto;
  hdr[7] = spec.ttl ?? 64;
  hdr.set(src, 8);
  hdr.set(dst, 24);
  return concat(hdr, ext, l4);
}

/** Builds an Ethernet frame with every checksum computed from scratch. */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const src = parseIp(spec.src);
  const dst = parseIp(spec.dst);
  if (src.length !== dst.length) throw new RangeError(`mixed address families: ${spec.src} and ${spec.dst}`);
  const v4 = src.length === 4;
  const l4 = buildL4(spec, src, dst);
  const l3 = v4 ? buildIpv4(spec, src, dst, l4) : buildIpv6(spec, src, dst, l4);
  const macs = concat(parseMac(spec.dmac ?? "02:00:00:00:00:01"), parseMac(spec.smac ?? "02:00:00:00:00:02"));
  // Built from the inside out: `after` is everything between the source MAC and the IP packet.
  let after: Uint8Array = u16be(spec.ethertype ?? (v4 ? ETH_P_IP : ETH_P_IPV6));
  let prefix: Uint8Array = new Uint8Array(0);
  for (const e of [...(spec.encap ?? [])].reverse()) {
    if (e.kind === "vlan") {
      const tci = ((e.pcp ?? 0) << 13) | e.vid;
      after = concat(u16be(e.tpid ?? ETH_P_8021Q), u16be(tci), after);
    } else if (e.kind === "pppoe") {
      // `after` is the IP ethertype here: PPPoE is the innermost header.
      const hdr = new Uint8Array(8);
      const v = new DataView(hdr.buffer);
      hdr[0] = e.verType ?? 0x11;
      hdr[1] = e.code ?? 0;
      v.setUint16(2, e.sid);
      v.setUint16(4, e.length ?? l3.length + 2);
      v.setUint16(6, e.pppProto ?? (v4 ? PPP_IP : PPP_IPV6));
      after = concat(u16be(e.ethertype ?? ETH_P_PPP_SES), hdr);
    } else if (e.kind === "dsa") {
      if (e.prepend) prefix = concat(e.tag, prefix);
      else after = concat(e.tag, after.subarray(e.absorb ?? 0));
    } else {
      after = concat(e.bytes, after);
    }
  }
  return concat(prefix, macs, after, l3, new Uint8Array(spec.padding ?? 0));
}

function u16be(n: number): Uint8Array {
  return new Uint8Array([(n >> 8) & 0xff, n & 0xff]);
}

/** The L2 header's length in a frame built from spec: where its IP packet starts. */
export function l2Length(spec: FrameSpec): number {
  const frame = buildFrame(spec);
  const plain = buildFrame({ ...spec, encap: [], padding: 0 });
  return frame.length - (spec.padding ?? 0) - (plain.length - ETH_HLEN);
}

/** The frame as plain Ethernet (the L2 header from l2Len on replaced by ethertype), for parseFrame. */
export function stripL2(frame: Uint8Array, l2Len: number, ethertype: number): Uint8Array {
  return concat(frame.subarray(0, 12), u16be(ethertype), frame.subarray(l2Len));
}

// ---- DSA tags, as the kernel's taggers (net/dsa/tag_*.c) lay them out ----

export type DsaTagger = "mtk" | "qca" | "brcm" | "brcm-prepend" | "gswip" | "dsa" | "edsa" | "rtl8_4";

/** A tag as a switch sends it to the CPU port for a frame received on user port `port`. */
export function dsaRx(tagger: DsaTagger, port: number): Encap {
  const b = (...bytes: number[]) => new Uint8Array(bytes);
  switch (tagger) {
    case "mtk": // 16-bit header, source port in bits 2-0, then 2 more bytes
      return { kind: "dsa", tag: b(0x00, port, 0x00, 0x00) };
    case "qca": // version 2 (bits 15-14), type 0 "normal", source port in bits 2-0
      return { kind: "dsa", tag: b(0x80, port) };
    case "brcm": // opcode 0, class id, reason code, source port in bits 4-0
      return { kind: "dsa", tag: b(0x00, 0x00, 0x00, port) };
    case "brcm-prepend":
      return { kind: "dsa", tag: b(0x00, 0x00, 0x00, port), prepend: true };
    case "gswip": // 8 bytes before the frame, source port in bits 6-4 of the last
      return { kind: "dsa", tag: b(0, 0, 0, 0, 0, 0, 0, port << 4), prepend: true };
    case "dsa": // FORWARD (3) from device 0, untagged; source port in bits 7-3 of byte 1
      return { kind: "dsa", tag: b(0xc0, port << 3, 0x00, 0x00) };
    case "edsa": // ethertype 0xdada, 2 reserved bytes, then the DSA tag
      return { kind: "dsa", tag: b(0xda, 0xda, 0x00, 0x00, 0xc0, port << 3, 0x00, 0x00) };
    case "rtl8_4": // ethertype 0x8899, protocol 4, reason 0, ..., source port in the last nibble
      return { kind: "dsa", tag: b(0x88, 0x99, 0x04, 0x00, 0x00, 0x00, 0x00, port) };
  }
}

/**
 * A tag as the CPU sends a frame to user port `port` (standalone), for a frame whose outermost
 * VLAN tag (if any) has TPID outerTpid: MediaTek merges its tag with any VLAN tag, Marvell with
 * an 802.1Q one.
 */
export function dsaTx(tagger: DsaTagger, port: number, outerTpid?: number, outerVid = 0): Encap {
  const b = (...bytes: number[]) => new Uint8Array(bytes);
  const bit = 1 << port;
  switch (tagger) {
    case "mtk":
      if (outerTpid !== undefined) return { kind: "dsa", tag: b(outerTpid === ETH_P_8021AD ? 2 : 1, bit), absorb: 2 };
      return { kind: "dsa", tag: b(0x00, bit, 0x00, 0x00) };
    case "qca": // version 2, from CPU (bit 7), destination port bitmap
      return { kind: "dsa", tag: b(0x80, 0x80 | bit) };
    case "brcm":
    case "brcm-prepend": {
      // opcode 1 (bits 7-5), traffic class 0, destination map (port 8 in byte 2)
      const tag = b(0x20, 0x00, port === 8 ? 1 : 0, bit & 0xff);
      return tagger === "brcm" ? { kind: "dsa", tag } : { kind: "dsa", tag, prepend: true };
    }
    case "gswip": // SLPID CPU, DPID ELAN, port map enable + select, map in bits 6-1, DPID_EN
      return { kind: "dsa", tag: b(0x02, 0x00, 0xc0, (bit << 1) | 1), prepend: true };
    case "dsa":
    case "edsa": {
      const edsa = tagger === "edsa" ? [0xda, 0xda, 0x00, 0x00] : [];
      if (outerTpid === ETH_P_8021Q) {
        // FROM_CPU (1), "tagged", carrying the 802.1Q tag's VID in its place
        return { kind: "dsa", tag: b(...edsa, 0x60, port << 3, outerVid >> 8, outerVid & 0xff), absorb: 4 };
      }
      return { kind: "dsa", tag: b(...edsa, 0x40, port << 3, 0x00, 0x00) };
    }
    case "rtl8_4": // ethertype 0x8899, protocol 4, LEARN_DIS, forwarding port mask
      return { kind: "dsa", tag: b(0x88, 0x99, 0x04, 0x00, 0x00, 0x20, bit >> 8, bit & 0xff) };
  }
}

export interface ParsedFrame {
  dmac: Uint8Array;
  smac: Uint8Array;
  ethertype: number;
  family: 4 | 6;
  /** 4 or 16 bytes */
  src: Uint8Array;
  dst: Uint8Array;
  /** IPv4 TTL or IPv6 hop limit */
  ttl: number;
  /** The L4 protocol (after any IPv6 extension headers). */
  proto: number;
  /** IPv4 tot_len or 40 + IPv6 payload length */
  l3Length: number;
  /** Frame bytes after the L3 packet. */
  trailing: number;
  sport: number;
  dport: number;
  /** 0 for UDP */
  tcpFlags: number;
  l4Checksum: number;
  /** The folded one's-complement sum of pseudo-header and segment: 0xffff when it verifies. */
  l4Sum: number;
  payload: Uint8Array;
  /** Always true for IPv6 (no header checksum). */
  ipChecksumOk: boolean;
  /** A UDP-over-IPv4 checksum of 0 ("none") counts as valid; over IPv6 it is invalid. */
  l4ChecksumOk: boolean;
}

export class FrameError extends Error {}

function need(frame: Uint8Array, end: number, what: string): void {
  if (frame.length < end) throw new FrameError(`frame of ${frame.length} bytes too short for ${what}`);
}

/** Parses and verifies a frame built like buildFrame's (IPv6 walks hop-by-hop/dest-options headers). */
export function parseFrame(frame: Uint8Array): ParsedFrame {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  need(frame, ETH_HLEN, "Ethernet");
  const ethertype = v.getUint16(12);
  let family: 4 | 6;
  let src: Uint8Array;
  let dst: Uint8Array;
  let ttl: number;
  let proto: number;
  let l3Length: number;
  let l4Off: number;
  let ipChecksumOk = true;
  if (ethertype === ETH_P_IP) {
    need(frame, ETH_HLEN + 20, "IPv4");
    const ihl = (frame[ETH_HLEN]! & 0x0f) * 4;
    need(frame, ETH_HLEN + ihl, "IPv4 options");
    family = 4;
    l3Length = v.getUint16(ETH_HLEN + 2);
    ttl = frame[ETH_HLEN + 8]!;
    proto = frame[ETH_HLEN + 9]!;
    src = frame.slice(ETH_HLEN + 12, ETH_HLEN + 16);
    dst = frame.slice(ETH_HLEN + 16, ETH_HLEN + 20);
    ipChecksumOk = onesSum(frame.subarray(ETH_HLEN, ETH_HLEN + ihl)) === 0xffff;
    l4Off = ETH_HLEN + ihl;
  } else if (ethertype === ETH_P_IPV6) {
    need(frame, ETH_HLEN + 40, "IPv6");
    family = 6;
    l3Length = 40 + v.getUint16(ETH_HLEN + 4);
    proto = frame[ETH_HLEN + 6]!;
    ttl = frame[ETH_HLEN + 7]!;
    src = frame.slice(ETH_HLEN + 8, ETH_HLEN + 24);
    dst = frame.slice(ETH_HLEN + 24, ETH_HLEN + 40);
    l4Off = ETH_HLEN + 40;
    while (proto === IPV6_HOPOPTS || proto === IPV6_DSTOPTS) {
      need(frame, l4Off + 8, "IPv6 extension header");
      proto = frame[l4Off]!;
      l4Off += (frame[l4Off + 1]! + 1) * 8;
    }
  } else {
    throw new FrameError(`ethertype 0x${ethertype.toString(16)} is neither IPv4 nor IPv6`);
  }
  const end = ETH_HLEN + l3Length;
  need(frame, end, "the L3 length");
  const l4 = frame.subarray(l4Off, end);
  const sum = (len: number) => onesSum(l4, onesSum(pseudoHeader(src, dst, proto, len)));
  let sport: number, dport: number, tcpFlags = 0, l4Checksum: number, payload: Uint8Array, l4ChecksumOk: boolean;
  if (proto === PROTO_TCP) {
    need(frame, l4Off + 20, "TCP");
    const doff = (frame[l4Off + 12]! >> 4) * 4;
    sport = v.getUint16(l4Off);
    dport = v.getUint16(l4Off + 2);
    tcpFlags = frame[l4Off + 13]!;
    l4Checksum = v.getUint16(l4Off + 16);
    payload = frame.slice(l4Off + doff, end);
    l4ChecksumOk = sum(l4.length) === 0xffff;
  } else if (proto === PROTO_UDP) {
    need(frame, l4Off + 8, "UDP");
    sport = v.getUint16(l4Off);
    dport = v.getUint16(l4Off + 2);
    l4Checksum = v.getUint16(l4Off + 6);
    payload = frame.slice(l4Off + 8, end);
    l4ChecksumOk = l4Checksum === 0 ? family === 4 : sum(l4.length) === 0xffff;
  } else {
    throw new FrameError(`L4 protocol ${proto} is neither TCP nor UDP`);
  }
  return {
    dmac: frame.slice(0, 6),
    smac: frame.slice(6, 12),
    ethertype,
    family,
    src,
    dst,
    ttl,
    proto,
    l3Length,
    trailing: frame.length - end,
    sport,
    dport,
    tcpFlags,
    l4Checksum,
    l4Sum: sum(l4.length),
    payload,
    ipChecksumOk,
    l4ChecksumOk,
  };
}

/** True when the frame's IPv4 header checksum (if any) and its TCP/UDP checksum are valid. */
export function checksumsValid(frame: Uint8Array): boolean {
  const p = parseFrame(frame);
  return p.ipChecksumOk && p.l4ChecksumOk;
}

/** Hex dump, for readable assertion failures. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
