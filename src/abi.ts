// The TypeScript mirror of bpf/flow_abi.h. test/abi.test.ts checks every size and offset here
// against the BTF of the compiled BPF object, so the header stays the single source of truth.

/** FLOW_ABI_VERSION of bpf/flow_abi.h. */
export const FLOW_ABI_VERSION = 4;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const FLOW_ACT_DROP = 1;
/** XDP passes the flow's packets to the stack; the TC program forwards them. */
export const FLOW_ACT_TC_ONLY = 2;
/** With FLOW_ACT_DROP: TCP packets are dropped only when they open a connection (SYN without ACK). */
export const FLOW_ACT_DROP_SYN = 4;
/** flow_key.vlan[] / flow_action.egressVlan[]: VID in the low 12 bits, this flag for TPID 0x88a8. */
export const FLOW_VLAN_VID_MASK = 0x0fff;
export const FLOW_VLAN_8021AD = 0x8000;

/** DSA taggers: offload_params.dsa_tagger and flow_action.egress_dsa_tagger. */
export const DSA_TAG_NONE = 0;
export const DSA_TAG_MTK = 1;
export const DSA_TAG_QCA = 2;
export const DSA_TAG_BRCM = 3;
export const DSA_TAG_BRCM_PREPEND = 4;
export const DSA_TAG_GSWIP = 5;
export const DSA_TAG_DSA = 6;
export const DSA_TAG_EDSA = 7;
export const DSA_TAG_RTL8_4 = 8;
/** The kernel's tagger names (/sys/class/net/CONDUIT/dsa/tagging) and their DSA_TAG_* values. */
export const DSA_TAGGERS: Readonly<Record<string, number>> = {
  mtk: DSA_TAG_MTK,
  qca: DSA_TAG_QCA,
  brcm: DSA_TAG_BRCM,
  "brcm-prepend": DSA_TAG_BRCM_PREPEND,
  gswip: DSA_TAG_GSWIP,
  dsa: DSA_TAG_DSA,
  edsa: DSA_TAG_EDSA,
  rtl8_4: DSA_TAG_RTL8_4,
};
export const FLOW_STATS_CLOSING = 1;
export const FLOW_EV_NEW = 1;
export const FLOW_EV_CLOSING = 2;
/** How far the datapath's clock (flow_stats.last_seen_ns) may lag CLOCK_MONOTONIC. */
export const FLOW_CLOCK_LAG_NS = 100_000_000n;
/** iface_stats: slots in the array, and how many of them, from ifindex % IFACE_SLOTS on, may hold a device's counters. */
export const IFACE_SLOTS = 256;
export const IFACE_PROBES = 4;

/** Byte offsets of each struct's members, named as in the C header. */
export const LAYOUT = {
  flow_key: {
    size: 52,
    members: {
      ifindex: 0, family: 4, proto: 5, dsa_port: 6, vlan: 8, pppoe_sid: 12, sport: 14, dport: 16,
      pad: 18, saddr: 20, daddr: 36,
    },
  },
  flow_action: {
    size: 88,
    members: {
      out_ifindex: 0, conn_id: 4, dir: 8, flags: 9, mtu: 10, dmac: 12, smac: 18, saddr: 24,
      daddr: 40, sport: 56, dport: 58, l3_csum_delta: 60, l4_csum_pseudo: 62, l4_csum_ports: 64,
      egress_vlan: 66, egress_pppoe_sid: 70, egress_dsa_tagger: 72, egress_dsa_port: 73,
      ingress_dmac: 74, ingress_smac: 80, pad: 86,
    },
  },
  flow_dir_stats: { size: 16, members: { packets: 0, bytes: 8 } },
  flow_stats: { size: 48, members: { dir: 0, last_seen_ns: 32, flags: 40, pad: 44 } },
  flow_event: { size: 60, members: { type: 0, conn_id: 4, key: 8 } },
  flow_config: { size: 8, members: { heartbeat_ns: 0 } },
  offload_params: {
    size: 24,
    members: { heartbeat_timeout_ns: 0, notify_interval_ns: 8, dsa_ports: 16, dsa_tagger: 20, pad: 21 },
  },
  iface_stats: {
    size: 56,
    members: {
      ifindex: 0, pad: 4, fwd_packets: 8, fwd_bytes: 16, pass_packets: 24, pass_bytes: 32, drop_packets: 40, drop_bytes: 48,
    },
  },
} as const;

/** A 16-byte address as it stands in the packet; IPv4 uses the first 4 bytes, the rest is zero. */
export type Addr = Uint8Array;

export interface FlowKey {
  ifindex: number;
  family: number;
  proto: number;
  dsaPort: number;
  vlan: readonly [number, number];
  pppoeSid: number;
  sport: number;
  dport: number;
  saddr: Addr;
  daddr: Addr;
}

export interface FlowAction {
  outIfindex: number;
  connId: number;
  dir: 0 | 1;
  flags: number;
  mtu: number;
  dmac: Uint8Array;
  smac: Uint8Array;
  saddr: Addr;
  daddr: Addr;
  sport: number;
  dport: number;
  l3CsumDelta: number;
  l4CsumPseudo: number;
  l4CsumPorts: number;
  egressVlan: readonly [number, number];
  egressPppoeSid: number;
  /** DSA_TAG_* of the egress conduit; omitted or DSA_TAG_NONE: no tag. */
  egressDsaTagger?: number;
  /** The switch port (not + 1) the tag sends the frame to. */
  egressDsaPort?: number;
  /**
   * The destination MAC a frame of this flow must carry (the receiving L3 device's): another
   * unicast one goes to the stack untouched. Omitted or all zero: no check.
   */
  ingressDmac?: Uint8Array;
  /** The source MAC a frame must carry (the PPPoE peer's); omitted or all zero: no check. */
  ingressSmac?: Uint8Array;
}

export interface FlowDirStats {
  packets: bigint;
  bytes: bigint;
}

export interface FlowStats {
  dir: readonly [FlowDirStats, FlowDirStats];
  lastSeenNs: bigint;
  flags: number;
}

export interface FlowEvent {
  type: number;
  connId: number;
  key: FlowKey;
}

const K = LAYOUT.flow_key.members;
const A = LAYOUT.flow_action.members;
const S = LAYOUT.flow_stats.members;
const E = LAYOUT.flow_event.members;

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Copies the first n bytes of src to buf at off (a loop: subarray() on a small array costs more). */
function copyBytes(buf: Uint8Array, off: number, src: Uint8Array, n: number): void {
  for (let i = 0; i < n && i < src.length; i++) buf[off + i] = src[i]!;
}

/** Writes a key into buf at offset (buf must be zeroed there: padding is compared bytewise). */
export function encodeKeyInto(k: FlowKey, buf: Uint8Array, off = 0): void {
  const v = view(buf);
  v.setUint32(off + K.ifindex, k.ifindex, true);
  v.setUint8(off + K.family, k.family);
  v.setUint8(off + K.proto, k.proto);
  v.setUint16(off + K.dsa_port, k.dsaPort, true);
  v.setUint16(off + K.vlan, k.vlan[0], true);
  v.setUint16(off + K.vlan + 2, k.vlan[1], true);
  v.setUint16(off + K.pppoe_sid, k.pppoeSid, false);
  v.setUint16(off + K.sport, k.sport, false);
  v.setUint16(off + K.dport, k.dport, false);
  v.setUint16(off + K.pad, 0, true);
  copyBytes(buf, off + K.saddr, k.saddr, 16);
  copyBytes(buf, off + K.daddr, k.daddr, 16);
}

export function encodeKey(k: FlowKey): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_key.size));
  encodeKeyInto(k, buf);
  return buf;
}

export function decodeKey(buf: Uint8Array, off = 0): FlowKey {
  const v = view(buf);
  return {
    ifindex: v.getUint32(off + K.ifindex, true),
    family: v.getUint8(off + K.family),
    proto: v.getUint8(off + K.proto),
    dsaPort: v.getUint16(off + K.dsa_port, true),
    vlan: [v.getUint16(off + K.vlan, true), v.getUint16(off + K.vlan + 2, true)],
    pppoeSid: v.getUint16(off + K.pppoe_sid, false),
    sport: v.getUint16(off + K.sport, false),
    dport: v.getUint16(off + K.dport, false),
    saddr: buf.slice(off + K.saddr, off + K.saddr + 16),
    daddr: buf.slice(off + K.daddr, off + K.daddr + 16),
  };
}

export function encodeAction(a: FlowAction): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_action.size));
  encodeActionInto(a, buf);
  return buf;
}

/** Writes an action into buf (all of it: fields left out of `a` become zero). */
export function encodeActionInto(a: FlowAction, buf: Uint8Array): void {
  buf.fill(0, 0, LAYOUT.flow_action.size);
  const v = view(buf);
  v.setUint32(A.out_ifindex, a.outIfindex, true);
  v.setUint32(A.conn_id, a.connId, true);
  v.setUint8(A.dir, a.dir);
  v.setUint8(A.flags, a.flags);
  v.setUint16(A.mtu, a.mtu, true);
  copyBytes(buf, A.dmac, a.dmac, 6);
  copyBytes(buf, A.smac, a.smac, 6);
  copyBytes(buf, A.saddr, a.saddr, 16);
  copyBytes(buf, A.daddr, a.daddr, 16);
  v.setUint16(A.sport, a.sport, false);
  v.setUint16(A.dport, a.dport, false);
  v.setUint16(A.l3_csum_delta, a.l3CsumDelta, true);
  v.setUint16(A.l4_csum_pseudo, a.l4CsumPseudo, true);
  v.setUint16(A.l4_csum_ports, a.l4CsumPorts, true);
  v.setUint16(A.egress_vlan, a.egressVlan[0], true);
  v.setUint16(A.egress_vlan + 2, a.egressVlan[1], true);
  v.setUint16(A.egress_pppoe_sid, a.egressPppoeSid, false);
  v.setUint8(A.egress_dsa_tagger, a.egressDsaTagger ?? DSA_TAG_NONE);
  v.setUint8(A.egress_dsa_port, a.egressDsaPort ?? 0);
  if (a.ingressDmac) copyBytes(buf, A.ingress_dmac, a.ingressDmac, 6);
  if (a.ingressSmac) copyBytes(buf, A.ingress_smac, a.ingressSmac, 6);
}

export function decodeAction(buf: Uint8Array): FlowAction {
  const v = view(buf);
  return {
    outIfindex: v.getUint32(A.out_ifindex, true),
    connId: v.getUint32(A.conn_id, true),
    dir: v.getUint8(A.dir) === 0 ? 0 : 1,
    flags: v.getUint8(A.flags),
    mtu: v.getUint16(A.mtu, true),
    dmac: buf.slice(A.dmac, A.dmac + 6),
    smac: buf.slice(A.smac, A.smac + 6),
    saddr: buf.slice(A.saddr, A.saddr + 16),
    daddr: buf.slice(A.daddr, A.daddr + 16),
    sport: v.getUint16(A.sport, false),
    dport: v.getUint16(A.dport, false),
    l3CsumDelta: v.getUint16(A.l3_csum_delta, true),
    l4CsumPseudo: v.getUint16(A.l4_csum_pseudo, true),
    l4CsumPorts: v.getUint16(A.l4_csum_ports, true),
    egressVlan: [v.getUint16(A.egress_vlan, true), v.getUint16(A.egress_vlan + 2, true)],
    egressPppoeSid: v.getUint16(A.egress_pppoe_sid, false),
    egressDsaTagger: v.getUint8(A.egress_dsa_tagger),
    egressDsaPort: v.getUint8(A.egress_dsa_port),
    ingressDmac: buf.slice(A.ingress_dmac, A.ingress_dmac + 6),
    ingressSmac: buf.slice(A.ingress_smac, A.ingress_smac + 6),
  };
}

export function decodeStats(buf: Uint8Array, off = 0): FlowStats {
  const v = view(buf);
  const dir = (i: number): FlowDirStats => ({
    packets: v.getBigUint64(off + S.dir + i * 16, true),
    bytes: v.getBigUint64(off + S.dir + i * 16 + 8, true),
  });
  return {
    dir: [dir(0), dir(1)],
    lastSeenNs: v.getBigUint64(off + S.last_seen_ns, true),
    flags: v.getUint32(off + S.flags, true),
  };
}

/** A direction's packet count read in place (exact up to 2^53): the sweep reads no more. */
export function statsPackets(v: DataView, off: number, dir: 0 | 1): number {
  const o = off + S.dir + dir * 16;
  return v.getUint32(o, true) + v.getUint32(o + 4, true) * 2 ** 32;
}

/** FLOW_STATS_* read in place. */
export function statsFlags(v: DataView, off: number): number {
  return v.getUint32(off + S.flags, true);
}

export function decodeEvent(buf: Uint8Array): FlowEvent {
  const v = view(buf);
  return {
    type: v.getUint32(E.type, true),
    connId: v.getUint32(E.conn_id, true),
    key: decodeKey(buf, E.key),
  };
}

export interface OffloadParams {
  heartbeatTimeoutNs: bigint;
  notifyIntervalNs: bigint;
  /** DSA_TAG_* of the device this program instance is attached to (a conduit); default none. */
  dsaTagger?: number;
  /** Bit n: switch port n of that conduit has a user device; default 0. */
  dsaPorts?: number;
}

export function encodeParams(p: OffloadParams): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(LAYOUT.offload_params.size));
  const v = view(buf);
  v.setBigUint64(LAYOUT.offload_params.members.heartbeat_timeout_ns, p.heartbeatTimeoutNs, true);
  v.setBigUint64(LAYOUT.offload_params.members.notify_interval_ns, p.notifyIntervalNs, true);
  v.setUint32(LAYOUT.offload_params.members.dsa_ports, p.dsaPorts ?? 0, true);
  v.setUint8(LAYOUT.offload_params.members.dsa_tagger, p.dsaTagger ?? DSA_TAG_NONE);
  return buf;
}

export function encodeConfig(heartbeatNs: bigint): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_config.size));
  view(buf).setBigUint64(LAYOUT.flow_config.members.heartbeat_ns, heartbeatNs, true);
  return buf;
}

export interface IfaceStats {
  fwdPackets: bigint;
  fwdBytes: bigint;
  passPackets: bigint;
  passBytes: bigint;
  dropPackets: bigint;
  dropBytes: bigint;
}

const I = LAYOUT.iface_stats.members;

/** The slots that may hold a device's counters, in the order the datapath tries them. */
export function ifaceSlotCandidates(ifindex: number): number[] {
  return Array.from({ length: IFACE_PROBES }, (_, i) => (ifindex + i) % IFACE_SLOTS);
}

/**
 * Gives each device a slot among its candidates, first come first served: ifindex -> slot. A
 * device whose candidates are all taken gets none (the datapath does not count it).
 */
export function placeIfaces(ifindexes: readonly number[]): Map<number, number> {
  const taken = new Set<number>();
  const placed = new Map<number, number>();
  for (const ifindex of ifindexes) {
    if (ifindex <= 0 || placed.has(ifindex)) continue;
    const slot = ifaceSlotCandidates(ifindex).find((c) => !taken.has(c));
    if (slot === undefined) continue;
    taken.add(slot);
    placed.set(ifindex, slot);
  }
  return placed;
}

/** An iface_stats value (nCpus per-CPU copies) naming ifindex (0: a free slot), counters zero. */
export function encodeIfaceSlot(ifindex: number, nCpus: number): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(nCpus * LAYOUT.iface_stats.size));
  for (let c = 0; c < nCpus; c++) view(buf).setUint32(c * LAYOUT.iface_stats.size + I.ifindex, ifindex, true);
  return buf;
}

/** The device an iface_stats value counts for (0: none), from the first CPU's copy. */
export function ifaceSlotOwner(buf: Uint8Array): number {
  return view(buf).getUint32(I.ifindex, true);
}

/** Sums the per-CPU values of one iface_stats entry (nCpus values of LAYOUT.iface_stats.size, 8-aligned). */
export function decodeIfaceStats(buf: Uint8Array, nCpus: number): IfaceStats {
  const v = view(buf);
  const sum = (off: number): bigint => {
    let t = 0n;
    for (let c = 0; c < nCpus; c++) t += v.getBigUint64(c * LAYOUT.iface_stats.size + off, true);
    return t;
  };
  return {
    fwdPackets: sum(I.fwd_packets),
    fwdBytes: sum(I.fwd_bytes),
    passPackets: sum(I.pass_packets),
    passBytes: sum(I.pass_bytes),
    dropPackets: sum(I.drop_packets),
    dropBytes: sum(I.drop_bytes),
  };
}
