// The fuzzer's inputs: valid frames of every encapsulation the datapath takes (plain Ethernet,
// 802.1Q, 802.1ad/QinQ, PPPoE, each DSA tagger; IPv4/IPv6, TCP/UDP), built with packet.ts, and
// random but valid flow actions for their keys (NAT, egress encapsulation, MTU, flags).
import {
  AF_INET,
  DSA_TAG_NONE,
  FLOW_ACT_DROP,
  FLOW_ACT_TC_ONLY,
  FLOW_VLAN_8021AD,
  type FlowAction,
  type FlowKey,
} from "../src/abi.ts";
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  PROTO_TCP,
  PROTO_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  buildFrame,
  dsaRx,
  type DsaTagger,
  type Encap,
  type FrameSpec,
} from "./packet.ts";
import { TAGGER_NAMES } from "./fuzz-model.ts";
import type { Rng } from "./fuzz-rng.ts";


/** The width of each tagger's receive source-port field (dsaRx takes ports below this). */
const RX_PORT_LIMIT: Readonly<Record<DsaTagger, number>> = {
  mtk: 8,
  qca: 8,
  brcm: 32,
  "brcm-prepend": 32,
  gswip: 8,
  dsa: 32,
  edsa: 32,
  rtl8_4: 16,
};

/** Where the headers of a generated frame are: what the field-aware mutators aim at. */
export interface Layout {
  /** DSA tag bytes before the destination MAC. */
  prepend: number;
  /** A DSA tag after the source MAC: offset and length (0: none). */
  tagOff: number;
  tagLen: number;
  /** Offset of each VLAN tag's TPID. */
  vlanOffs: number[];
  /** Offset of the PPPoE ethertype (0x8864), -1 without PPPoE. */
  pppoeOff: number;
  /** The ethertype (or PPP protocol) right in front of the IP header. */
  etypeOff: number;
  l3Off: number;
  l3Len: number;
  l4Off: number;
  family: 4 | 6;
  proto: typeof PROTO_TCP | typeof PROTO_UDP;
}

export interface BaseFrame {
  frame: Uint8Array;
  layout: Layout;
}

function macText(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

function ipText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return words.join(":");
}

/** A port of the conduit that has a user device and that the receive tag can carry. */
function userPort(rng: Rng, tagger: DsaTagger, ports: number): number {
  const ok: number[] = [];
  for (let p = 0; p < RX_PORT_LIMIT[tagger]; p++) if ((ports >>> p) & 1) ok.push(p);
  return ok.length ? rng.pick(ok) : 0;
}

function payloadLength(rng: Rng, small: boolean): number {
  if (small) return rng.int(24);
  return rng.weighted<() => number>([
    [40, () => rng.int(48)],
    [35, () => rng.range(48, 400)],
    [22, () => rng.range(400, 1460)],
    [3, () => rng.range(1460, 2900)], // jumbo frames
  ])();
}

/** A valid frame for a conduit (tagger DSA_TAG_NONE: a plain device); small: a short payload. */
export function genBase(rng: Rng, tagger: number, ports: number, small = false): BaseFrame {
  const family = rng.chance(0.5) ? 4 : 6;
  const proto = rng.chance(0.5) ? PROTO_TCP : PROTO_UDP;
  const encap: Encap[] = [];
  let prepend = 0;
  let tagLen = 0;
  if (tagger !== DSA_TAG_NONE) {
    const name = TAGGER_NAMES.get(tagger)!;
    const e = dsaRx(name, userPort(rng, name, ports));
    if (e.kind === "dsa") {
      if (e.prepend) prepend = e.tag.length;
      else tagLen = e.tag.length;
    }
    encap.push(e);
  }
  const nVlans = rng.weighted([
    [50, 0],
    [30, 1],
    [20, 2],
  ]);
  for (let i = 0; i < nVlans; i++) {
    // The DEI bit (0x1000 of the TCI) rides along in vid: neither it nor the PCP is in the key.
    const vid = rng.range(1, 4094) | (rng.chance(0.1) ? 0x1000 : 0);
    encap.push({ kind: "vlan", vid, tpid: rng.chance(0.35) ? ETH_P_8021AD : ETH_P_8021Q, pcp: rng.chance(0.2) ? rng.int(8) : 0 });
  }
  const pppoe = rng.chance(0.25);
  if (pppoe) encap.push({ kind: "pppoe", sid: rng.range(1, 0xfffe) });
  const addr = () => rng.bytes(family === 4 ? 4 : 16);
  const dmac = rng.bytes(6);
  dmac[0] = dmac[0]! & 0xfe;
  // Now and then a CHECKSUM_PARTIAL packet from a local sender with checksum offload.
  const partial = rng.chance(0.05);
  const flags = rng.chance(0.06) ? rng.pick([TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN, TCP_SYN | TCP_ACK]) : TCP_ACK | (rng.chance(0.5) ? TCP_PSH : 0);
  const spec: FrameSpec = {
    encap,
    dmac: macText(dmac),
    smac: macText(rng.bytes(6)),
    src: ipText(addr()),
    dst: ipText(addr()),
    proto,
    sport: rng.int(0x10000),
    dport: rng.int(0x10000),
    ttl: rng.chance(0.05) ? rng.int(2) : rng.range(2, 255),
    tos: rng.int(256),
    ipId: rng.int(0x10000),
    df: rng.chance(0.7),
    flowLabel: rng.int(0x100000),
    tcpFlags: flags,
    seq: rng.u32(),
    ack: rng.u32(),
    window: rng.int(0x10000),
    tcpOptions: rng.chance(0.3) ? rng.bytes(rng.range(1, 40)) : undefined,
    udpChecksum: !partial && family === 4 && rng.chance(0.1) ? "none" : "computed",
    partialChecksum: partial,
    payload: rng.bytes(payloadLength(rng, small)),
  };
  const unpadded = buildFrame(spec).length;
  // Ethernet pads to 60 bytes; sometimes there is more junk after the packet.
  let padding = unpadded < 60 && rng.chance(0.7) ? 60 - unpadded : 0;
  if (rng.chance(0.1)) padding += rng.range(1, 32);
  const frame = buildFrame({ ...spec, padding });

  let pos = prepend + 12;
  const tagOff = tagLen ? pos : 0;
  pos += tagLen;
  const vlanOffs: number[] = [];
  for (let i = 0; i < nVlans; i++, pos += 4) vlanOffs.push(pos);
  const pppoeOff = pppoe ? pos : -1;
  if (pppoe) pos += 8;
  const etypeOff = pos;
  const l3Off = pos + 2;
  return {
    frame,
    layout: {
      prepend,
      tagOff,
      tagLen,
      vlanOffs,
      pppoeOff,
      etypeOff,
      l3Off,
      l3Len: unpadded - l3Off,
      l4Off: l3Off + (family === 4 ? 20 : 40),
      family,
      proto,
    },
  };
}

// ---- Actions ----

function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** RFC 1624: the folded sum of ~old + new over big-endian 16-bit words, as the ABI stores it. */
export function csumDelta(old: Uint8Array, neu: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < old.length; i += 2) s += (~((old[i]! << 8) | old[i + 1]!) & 0xffff) + ((neu[i]! << 8) | neu[i + 1]!);
  return fold(s);
}

const be16 = (...ns: number[]) => new Uint8Array(ns.flatMap((n) => [n >> 8, n & 0xff]));

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Max switch port of each tagger's transmit format, by DSA_TAG_*. */
const TX_PORTS: Readonly<Record<number, number>> = { 1: 5, 2: 6, 3: 8, 4: 8, 5: 5, 6: 31, 7: 31, 8: 10 };

export interface ActionOpts {
  connId: number;
  ingressIfindex: number;
  /** The L3 length of the flow's packets, for MTUs right at the edge. */
  l3Len: number;
  /** The MACs of the flow's frames, for ingress MAC checks that mostly match. */
  dmac: Uint8Array;
  smac: Uint8Array;
}

/**
 * The ingress MAC checks, as the daemon fills them: mostly the receiving device's MAC (the
 * frame's destination) and, over PPPoE, the peer's (its source); sometimes another host's; and
 * now and then none (all zero, or omitted).
 */
function ingressMacs(rng: Rng, key: FlowKey, o: ActionOpts): Pick<FlowAction, "ingressDmac" | "ingressSmac"> {
  const other = (mac: Uint8Array): Uint8Array => {
    const m = rng.chance(0.5) ? rng.bytes(6) : mac.slice();
    if (m.every((b, i) => b === mac[i])) m[5] = m[5]! ^ (1 << rng.int(8));
    m[0] = m[0]! & 0xfe;
    return m;
  };
  const pick = (mac: Uint8Array, set: number): Uint8Array | undefined =>
    rng.weighted<() => Uint8Array | undefined>([
      [set * 0.9, () => mac.slice()],
      [set * 0.1, () => other(mac)],
      [(1 - set) * 0.5, () => new Uint8Array(6)],
      [(1 - set) * 0.5, () => undefined],
    ])();
  const out: Pick<FlowAction, "ingressDmac" | "ingressSmac"> = {};
  const d = pick(o.dmac, 0.6);
  const s = pick(o.smac, key.pppoeSid ? 0.7 : 0.1);
  if (d) out.ingressDmac = d;
  if (s) out.ingressSmac = s;
  return out;
}

function egress(rng: Rng): Pick<FlowAction, "egressVlan" | "egressPppoeSid" | "egressDsaTagger" | "egressDsaPort"> {
  const tag = () => rng.range(1, 4094) | (rng.chance(0.35) ? FLOW_VLAN_8021AD : 0);
  const n = rng.weighted([
    [50, 0],
    [30, 1],
    [20, 2],
  ]);
  const vlan: [number, number] = [n > 0 ? tag() : 0, n > 1 ? tag() : 0];
  const sid = rng.chance(0.25) ? rng.range(1, 0xfffe) : 0;
  const tagger = rng.chance(0.35) ? rng.range(1, 8) : DSA_TAG_NONE;
  const port = tagger ? rng.range(0, TX_PORTS[tagger]!) : 0;
  const e = { egressVlan: vlan, egressPppoeSid: sid, egressDsaTagger: tagger, egressDsaPort: port };
  if (!rng.chance(0.05)) return e;
  // Now and then one the datapath cannot build: it must leave such packets to the stack.
  const bad = rng.int(6);
  if (bad === 0) e.egressVlan = [0, tag()];
  else if (bad === 1) e.egressVlan = [rng.pick([0x000, 0xfff, 0x8000, 0x8fff]), 0];
  else if (bad === 2) e.egressVlan = [tag() | (rng.range(1, 7) << 12), 0];
  else if (bad === 3) e.egressPppoeSid = 0xffff;
  else if (bad === 4) {
    e.egressDsaTagger = rng.range(1, 8);
    e.egressDsaPort = rng.range(TX_PORTS[e.egressDsaTagger]! + 1, 255);
  } else {
    e.egressDsaTagger = rng.range(9, 255);
  }
  return e;
}

/** A random action for key: NAT, egress, MTU and flags, with the deltas user space would compute. */
export function genAction(rng: Rng, key: FlowKey, o: ActionOpts): FlowAction {
  const v4 = key.family === AF_INET;
  const alen = v4 ? 4 : 16;
  const newAddr = (old: Uint8Array) => {
    const out = new Uint8Array(16);
    out.set(rng.chance(0.5) ? rng.bytes(alen) : old.subarray(0, alen));
    return out;
  };
  const saddr = newAddr(key.saddr);
  const daddr = newAddr(key.daddr);
  const sport = rng.chance(0.5) ? rng.int(0x10000) : key.sport;
  const dport = rng.chance(0.3) ? rng.int(0x10000) : key.dport;
  const addrDelta = csumDelta(
    concat(key.saddr.subarray(0, alen), key.daddr.subarray(0, alen)),
    concat(saddr.subarray(0, alen), daddr.subarray(0, alen)),
  );
  // The IPv4 word at bytes 8-9 is TTL << 8 | protocol; the decrement's delta is the same for
  // every TTL the datapath forwards (2..255).
  const ttlDelta = csumDelta(be16((64 << 8) | key.proto), be16((63 << 8) | key.proto));
  const mtu = rng.weighted<() => number>([
    [40, () => rng.pick([1500, 1492, 9000, 65535, rng.range(1500, 9000)])],
    [15, () => o.l3Len],
    [10, () => o.l3Len - 1],
    [15, () => rng.range(1280, 1500)],
    [10, () => rng.int(0x10000)],
  ])();
  const flags = rng.weighted([
    [85, 0],
    [5, FLOW_ACT_DROP],
    [10, FLOW_ACT_TC_ONLY],
  ]);
  const dmac = rng.bytes(6);
  return {
    outIfindex: rng.chance(0.2) ? o.ingressIfindex : rng.range(2, 1000),
    connId: o.connId,
    dir: rng.chance(0.5) ? 0 : 1,
    flags,
    mtu: Math.max(0, Math.min(0xffff, mtu)),
    dmac,
    smac: rng.bytes(6),
    saddr,
    daddr,
    sport,
    dport,
    l3CsumDelta: v4 ? fold(addrDelta + ttlDelta) : 0,
    l4CsumPseudo: addrDelta,
    l4CsumPorts: csumDelta(be16(key.sport, key.dport), be16(sport, dport)),
    ...egress(rng),
    ...ingressMacs(rng, key, o),
  };
}

/** A key one field away from k: a flow a careless parser (or a mutated frame) might hit. */
export function nearKey(rng: Rng, k: FlowKey): FlowKey {
  const n: FlowKey = { ...k, vlan: [k.vlan[0], k.vlan[1]], saddr: k.saddr.slice(), daddr: k.daddr.slice() };
  switch (rng.int(8)) {
    case 0:
      n.vlan = [k.vlan[1], k.vlan[0]];
      break;
    case 1:
      n.vlan = [k.vlan[0] ^ FLOW_VLAN_8021AD, k.vlan[1]];
      break;
    case 2:
      n.vlan = [k.vlan[0] ? k.vlan[0] : rng.range(1, 4094), k.vlan[1]];
      break;
    case 3:
      n.dsaPort = (k.dsaPort + rng.range(1, 8)) & 0x1f;
      break;
    case 4:
      n.pppoeSid = k.pppoeSid ? 0 : rng.range(1, 0xfffe);
      break;
    case 5:
      n.proto = k.proto === PROTO_TCP ? PROTO_UDP : PROTO_TCP;
      break;
    case 6:
      n.ifindex = k.ifindex + 1;
      break;
    default:
      n.sport = k.dport;
      n.dport = k.sport;
  }
  return n;
}

