// Mutations of a valid frame: the hostile inputs of the fuzzer. Field-aware ones aim at one
// header (lengths, IHL, fragments, extension chains, VLAN stacks, PPPoE lies, DSA ports, TCP data
// offsets) and often repair the IPv4 header checksum afterwards so that the change gets past it;
// blind ones flip bits, overwrite bytes or make up whole frames. Each returns a new frame and
// says what it did, for the failure report.
import { DSA_TAG_NONE } from "../src/abi.ts";
import { ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ETH_P_PPP_DISC, ETH_P_PPP_SES } from "./packet.ts";
import type { Layout } from "./fuzz-gen.ts";
import { foldSum, sumWords } from "./fuzz-model.ts";
import type { Rng } from "./fuzz-rng.ts";

export interface Mutated {
  frame: Uint8Array;
  desc: string;
}

export interface Target {
  layout: Layout;
  tagger: number;
  ports: number;
}

type Mutator = (f: Uint8Array, t: Target, rng: Rng) => Mutated;

const u16 = (b: Uint8Array, off: number): number => (b[off]! << 8) | b[off + 1]!;

function set16(b: Uint8Array, off: number, v: number): void {
  if (off + 1 >= b.length) return;
  b[off] = (v >> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

/** Writes bytes at off, as far as the frame (which earlier mutations may have cut) reaches. */
function put(f: Uint8Array, off: number, bytes: Uint8Array): void {
  if (off < f.length) f.set(bytes.subarray(0, f.length - off), off);
}

function splice(f: Uint8Array, off: number, remove: number, insert: Uint8Array = new Uint8Array(0)): Uint8Array {
  const at = Math.min(off, f.length);
  const out = new Uint8Array(f.length - Math.min(remove, f.length - at) + insert.length);
  out.set(f.subarray(0, at));
  out.set(insert, at);
  out.set(f.subarray(at + remove), at + insert.length);
  return out;
}

/**
 * Recomputes the IPv4 header checksum at l3Off over the header its IHL claims (if present), or
 * over the first 20 bytes only, as a parser that ignores the IHL would check it.
 */
export function fixIpv4(f: Uint8Array, l3Off: number, only20 = false): void {
  const hl = only20 ? 20 : Math.max(20, (f[l3Off]! & 0x0f) * 4);
  if (l3Off + hl > f.length) return;
  f[l3Off + 10] = f[l3Off + 11] = 0;
  set16(f, l3Off + 10, ~foldSum(sumWords(f, l3Off, l3Off + hl)) & 0xffff);
}

/** Recomputes the TCP/UDP checksum of the packet at l3Off, as its headers describe it. */
export function fixL4(f: Uint8Array, l3Off: number, family: 4 | 6): void {
  const v4 = family === 4;
  if (l3Off + (v4 ? 20 : 40) > f.length) return;
  const ihl = v4 ? (f[l3Off]! & 0x0f) * 4 : 40;
  const l3Len = v4 ? u16(f, l3Off + 2) : 40 + u16(f, l3Off + 4);
  const proto = f[l3Off + (v4 ? 9 : 6)]!;
  const l4 = l3Off + ihl;
  const end = l3Off + l3Len;
  const csOff = l4 + (proto === 17 ? 6 : 16);
  if ((proto !== 6 && proto !== 17) || ihl < 20 || end > f.length || csOff + 2 > end) return;
  f[csOff] = f[csOff + 1] = 0;
  const addrs = v4 ? sumWords(f, l3Off + 12, l3Off + 20) : sumWords(f, l3Off + 8, l3Off + 40);
  const c = ~foldSum(addrs + proto + (end - l4) + sumWords(f, l4, end)) & 0xffff;
  set16(f, csOff, proto === 17 && c === 0 ? 0xffff : c);
}

function flipBits(f: Uint8Array, rng: Rng, from: number, to: number, n: number): string {
  const at: number[] = [];
  for (let i = 0; i < n && to > from; i++) {
    const bit = rng.range(from * 8, to * 8 - 1);
    f[bit >> 3] = f[bit >> 3]! ^ (1 << (bit & 7));
    at.push(bit);
  }
  return at.join(",");
}

const hex16 = (v: number) => `0x${v.toString(16)}`;

/** Some lengths around a right one, and some that are just wrong. */
function lengthLie(rng: Rng, right: number): number {
  return rng.weighted<() => number>([
    [30, () => right + rng.pick([-2, -1, 1, 2])],
    [20, () => right + rng.range(-64, 64)],
    [20, () => rng.int(0x10000)],
    [30, () => rng.pick([0, 1, 7, 8, 19, 20, 39, 40, 41, 0x7fff, 0xffff])],
  ])() & 0xffff;
}

// ---- Whole-frame mutations ----

const truncate: Mutator = (f, _t, rng) => {
  const len = rng.range(14, f.length - 1);
  return { frame: f.slice(0, len), desc: `truncated to ${len}` };
};

const pad: Mutator = (f, _t, rng) => {
  const n = rng.range(1, 64);
  const out = new Uint8Array(f.length + n);
  out.set(f);
  out.set(rng.bytes(n), f.length);
  return { frame: out, desc: `${n} trailing bytes` };
};

const bitFlips: Mutator = (f, t, rng) => {
  const headers = rng.chance(0.75);
  const to = headers ? Math.min(f.length, t.layout.l4Off + 20) : f.length;
  const n = rng.range(1, 8);
  return { frame: f, desc: `bit flips ${flipBits(f, rng, 0, to, n)}` };
};

const randomBytes: Mutator = (f, t, rng) => {
  const n = rng.range(1, 16);
  const at = rng.chance(0.75) ? rng.int(Math.min(f.length, t.layout.l4Off + 20)) : rng.int(f.length);
  const bytes = rng.bytes(Math.min(n, f.length - at));
  put(f, at, bytes);
  return { frame: f, desc: `random bytes at ${at}: ${Array.from(bytes, (b) => b.toString(16)).join(" ")}` };
};

const insertBytes: Mutator = (f, t, rng) => {
  const at = rng.range(12, Math.min(f.length, t.layout.l4Off + 8));
  const n = rng.pick([1, 2, 4, 8, rng.range(1, 24)]);
  return { frame: splice(f, at, 0, rng.bytes(n)), desc: `${n} random bytes inserted at ${at}` };
};

const removeBytes: Mutator = (f, t, rng) => {
  const at = rng.range(12, Math.min(f.length - 1, t.layout.l4Off + 8));
  const n = rng.pick([1, 2, 4, 8, rng.range(1, 24)]);
  return { frame: splice(f, at, n), desc: `${n} bytes removed at ${at}` };
};

/** A made-up frame: random bytes, often with a plausible ethertype and IP version. */
const randomFrame: Mutator = (_f, t, rng) => {
  const f = rng.bytes(rng.range(14, 200));
  const at = t.layout.etypeOff;
  if (rng.chance(0.6) && at + 3 < f.length) {
    const et = rng.pick([ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD, ETH_P_PPP_SES]);
    set16(f, at, et);
    if (et === ETH_P_IP) f[at + 2] = 0x45;
    if (et === ETH_P_IPV6) f[at + 2] = 0x60;
    if (et === ETH_P_IP && rng.chance(0.5)) fixIpv4(f, at + 2);
  }
  f[t.layout.prepend] = f[t.layout.prepend]! & 0xfe;
  return { frame: f, desc: `random frame of ${f.length} bytes` };
};

// ---- Ethernet ----

const ethertype: Mutator = (f, t, rng) => {
  const et = rng.pick([ETH_P_IP, ETH_P_IPV6, 0x0806, 0x0060, 0x05dc, 0x0600, ETH_P_8021Q, ETH_P_8021AD, ETH_P_PPP_SES, ETH_P_PPP_DISC, rng.int(0x10000)]);
  set16(f, t.layout.etypeOff, et);
  return { frame: f, desc: `ethertype/PPP protocol at ${t.layout.etypeOff} = ${hex16(et)}` };
};

const destMac: Mutator = (f, t, rng) => {
  const at = t.layout.prepend;
  if (rng.chance(0.3)) {
    f.fill(0xff, at, at + 6);
    return { frame: f, desc: "broadcast destination" };
  }
  f[at] = f[at]! | 1;
  return { frame: f, desc: "multicast destination bit" };
};

/**
 * Other unicast MACs: a frame for another host (a second gateway), or from another PPPoE peer.
 * Valid as a frame; the flow's ingress MAC checks decide whether it is the flow's.
 */
const macs: Mutator = (f, t, rng) => {
  const at = t.layout.prepend;
  const which = rng.weighted([
    [40, "destination"],
    [30, "source"],
    [30, "both"],
  ] as const);
  if (which !== "source") put(f, at, rng.chance(0.5) ? rng.bytes(6) : flipBit(f.slice(at, at + 6), rng));
  if (which !== "destination") put(f, at + 6, rng.chance(0.5) ? rng.bytes(6) : flipBit(f.slice(at + 6, at + 12), rng));
  f[at] = f[at]! & 0xfe;
  return { frame: f, desc: `other unicast ${which} MAC${which === "both" ? "s" : ""}` };
};

/** mac with one random bit flipped (the multicast bit of byte 0 is cleared afterwards anyway). */
function flipBit(mac: Uint8Array, rng: Rng): Uint8Array {
  const i = rng.int(48);
  mac[i >> 3] = mac[i >> 3]! ^ (1 << (i & 7));
  return mac;
}

// ---- IPv4 ----

function v4(m: (f: Uint8Array, l3: number, rng: Rng) => string): Mutator {
  return (f, t, rng) => {
    if (t.layout.family !== 4) return bitFlips(f, t, rng);
    const desc = m(f, t.layout.l3Off, rng);
    const fix = rng.weighted([
      [50, "(header checksum fixed)"],
      [30, "(checksum fixed over 20 bytes)"],
      [20, ""],
    ]);
    if (fix) fixIpv4(f, t.layout.l3Off, fix.includes("20"));
    return { frame: f, desc: `${desc} ${fix}`.trimEnd() };
  };
}

const v4Length = v4((f, l3, rng) => {
  const v = lengthLie(rng, u16(f, l3 + 2));
  set16(f, l3 + 2, v);
  return `IPv4 total length ${v}`;
});

const v4Ihl = v4((f, l3, rng) => {
  const ihl = rng.pick([0, 1, 4, 6, 7, 15, rng.int(16)]);
  f[l3] = 0x40 | ihl;
  return `IPv4 IHL ${ihl}`;
});

const v4Version = v4((f, l3, rng) => {
  const v = rng.pick([0, 5, 6, 15, rng.int(16)]);
  f[l3] = (v << 4) | (f[l3]! & 0x0f);
  return `IP version ${v}`;
});

const v4Frag = v4((f, l3, rng) => {
  const v = rng.pick([0x2000, 0x0001, 0x1fff, 0x00b9, 0x8000, 0x4000, 0x6000, 0xc000, rng.int(0x10000)]);
  set16(f, l3 + 6, v);
  return `IPv4 flags/fragment offset ${hex16(v)}`;
});

const v4Proto = v4((f, l3, rng) => {
  const p = rng.pick([0, 1, 6, 17, 41, 47, 50, 132, 136, 255, rng.int(256)]);
  f[l3 + 9] = p;
  return `IPv4 protocol ${p}`;
});

const v4HeaderByte = v4((f, l3, rng) => {
  const at = l3 + rng.int(20);
  f[at] = rng.int(256);
  return `IPv4 header byte ${at} = ${f[at]}`;
});

const v4Checksum: Mutator = (f, t, rng) => {
  if (t.layout.family !== 4) return bitFlips(f, t, rng);
  return { frame: f, desc: `IPv4 checksum bits ${flipBits(f, rng, t.layout.l3Off + 10, t.layout.l3Off + 12, rng.range(1, 3))}` };
};

/** Real options: a valid IPv4 packet the fast path must leave to the stack. */
const v4Options: Mutator = (f, t, rng) => {
  if (t.layout.family !== 4) return v6Chain(f, t, rng);
  const l3 = t.layout.l3Off;
  const words = rng.range(1, 10);
  const opts = rng.bytes(words * 4);
  const out = splice(f, l3 + 20, 0, opts);
  out[l3] = 0x45 + words;
  set16(out, l3 + 2, u16(out, l3 + 2) + words * 4);
  fixIpv4(out, l3);
  return { frame: out, desc: `${words * 4} bytes of IPv4 options` };
};

// ---- IPv6 ----

const v6Field: Mutator = (f, t, rng) => {
  if (t.layout.family !== 6) return v4Length(f, t, rng);
  const l3 = t.layout.l3Off;
  switch (rng.int(3)) {
    case 0: {
      const v = lengthLie(rng, u16(f, l3 + 4));
      set16(f, l3 + 4, v);
      return { frame: f, desc: `IPv6 payload length ${v}` };
    }
    case 1: {
      const v = rng.pick([0, 4, 5, 7, 15]);
      f[l3] = (v << 4) | (f[l3]! & 0x0f);
      return { frame: f, desc: `IP version ${v}` };
    }
    default: {
      const nh = rng.pick([0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, rng.int(256)]);
      f[l3 + 6] = nh;
      return { frame: f, desc: `IPv6 next header ${nh}` };
    }
  }
};

/** A chain of extension headers before the TCP/UDP header, payload length usually fixed. */
const v6Chain: Mutator = (f, t, rng) => {
  if (t.layout.family !== 6) return v4Options(f, t, rng);
  const l3 = t.layout.l3Off;
  const n = rng.range(1, 4);
  const types: number[] = [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) types.push(rng.pick([0, 43, 44, 60, 51, 135, 139, 140]));
  const last = rng.chance(0.85) ? t.layout.proto : rng.pick([59, 58, rng.int(256)]);
  for (let i = 0; i < n; i++) {
    const type = types[i]!;
    // Hop-by-hop and friends count 8-byte units beyond the first, AH 4-byte units minus 2, and
    // a fragment header is always 8 bytes. Each names the next; the last the L4 protocol.
    const units = rng.int(3);
    const size = type === 44 ? 8 : type === 51 ? (units + 3) * 4 : (units + 1) * 8;
    const h = rng.bytes(size);
    h[0] = i + 1 < n ? types[i + 1]! : last;
    h[1] = type === 44 ? 0 : type === 51 ? units + 1 : units;
    parts.push(h);
  }
  const chain = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    chain.set(p, o);
    o += p.length;
  }
  const out = splice(f, l3 + 40, 0, chain);
  out[l3 + 6] = types[0]!;
  const fixLen = rng.chance(0.9);
  if (fixLen) set16(out, l3 + 4, u16(out, l3 + 4) + chain.length);
  return { frame: out, desc: `IPv6 extension chain ${types.join(">")}>${last}${fixLen ? "" : " (payload length not fixed)"}` };
};

const ttl: Mutator = (f, t, rng) => {
  const l3 = t.layout.l3Off;
  const v = rng.pick([0, 1, 2, 255, rng.int(256)]);
  f[l3 + (t.layout.family === 4 ? 8 : 7)] = v;
  if (t.layout.family === 4) fixIpv4(f, l3);
  return { frame: f, desc: `TTL/hop limit ${v}` };
};

// ---- L4 ----

const tcpDoff: Mutator = (f, t, rng) => {
  if (t.layout.proto !== 6) return udpLength(f, t, rng);
  const doff = rng.pick([0, 1, 4, 5, 6, 15, rng.int(16)]);
  f[t.layout.l4Off + 12] = (doff << 4) | (f[t.layout.l4Off + 12]! & 0x0f);
  const fix = rng.chance(0.5);
  if (fix) fixL4(f, t.layout.l3Off, t.layout.family);
  return { frame: f, desc: `TCP data offset ${doff}${fix ? " (checksum fixed)" : ""}` };
};

const tcpFlags: Mutator = (f, t, rng) => {
  if (t.layout.proto !== 6) return udpChecksum(f, t, rng);
  const v = rng.pick([0x01, 0x02, 0x04, 0x11, 0x12, 0x14, 0x3f, 0xff, 0x00, rng.int(256)]);
  f[t.layout.l4Off + 13] = v;
  return { frame: f, desc: `TCP flags ${hex16(v)}` };
};

const udpLength: Mutator = (f, t, rng) => {
  if (t.layout.proto !== 17) return tcpDoff(f, t, rng);
  const v = lengthLie(rng, u16(f, t.layout.l4Off + 4));
  set16(f, t.layout.l4Off + 4, v);
  return { frame: f, desc: `UDP length ${v}` };
};

const udpChecksum: Mutator = (f, t, rng) => {
  if (t.layout.proto !== 17) return tcpFlags(f, t, rng);
  const v = rng.pick([0, 0xffff, rng.int(0x10000)]);
  set16(f, t.layout.l4Off + 6, v);
  return { frame: f, desc: `UDP checksum ${hex16(v)}` };
};

/** Payload corruption: a bad L4 checksum the forwarder must carry along unchanged in meaning. */
const payload: Mutator = (f, t, rng) => {
  const from = t.layout.l4Off + (t.layout.proto === 6 ? 20 : 8);
  const to = t.layout.l3Off + t.layout.l3Len;
  if (to <= from) return pad(f, t, rng);
  return { frame: f, desc: `payload bit flips ${flipBits(f, rng, from, to, rng.range(1, 4))}` };
};

const ports: Mutator = (f, t, rng) => {
  put(f, t.layout.l4Off, rng.bytes(4));
  const fix = rng.chance(0.5);
  if (fix) fixL4(f, t.layout.l3Off, t.layout.family);
  return { frame: f, desc: `other ports${fix ? " (checksum fixed)" : ""}` };
};

// ---- VLAN ----

function vlanTag(rng: Rng): Uint8Array {
  const tpid = rng.weighted([
    [45, ETH_P_8021Q],
    [45, ETH_P_8021AD],
    [10, rng.pick([0x9100, 0x9200, rng.int(0x10000)])],
  ]);
  const vid = rng.weighted([
    [80, rng.range(1, 4094)],
    [10, 0],
    [10, 4095],
  ]);
  const tci = (rng.int(16) << 12) | vid;
  return new Uint8Array([tpid >> 8, tpid & 0xff, tci >> 8, tci & 0xff]);
}

/** Extra tags in the stack: three (or four) tags, or one in front of PPPoE / IP. */
const vlanInsert: Mutator = (f, t, rng) => {
  const L = t.layout;
  const slots = [...L.vlanOffs, L.pppoeOff >= 0 ? L.pppoeOff : L.etypeOff];
  const at = rng.pick(slots);
  const n = rng.range(1, 2);
  let out = f;
  for (let i = 0; i < n; i++) out = splice(out, at, 0, vlanTag(rng));
  return { frame: out, desc: `${n} VLAN tag(s) inserted at ${at} (${L.vlanOffs.length + n} in all)` };
};

const vlanRemove: Mutator = (f, t, rng) => {
  if (!t.layout.vlanOffs.length) return vlanInsert(f, t, rng);
  const at = rng.pick(t.layout.vlanOffs);
  return { frame: splice(f, at, 4), desc: `VLAN tag at ${at} removed` };
};

const vlanField: Mutator = (f, t, rng) => {
  if (!t.layout.vlanOffs.length) return vlanInsert(f, t, rng);
  const at = rng.pick(t.layout.vlanOffs);
  const tag = vlanTag(rng);
  const which = rng.int(3);
  if (which === 0) put(f, at, tag.subarray(0, 2));
  else if (which === 1) put(f, at + 2, tag.subarray(2, 4));
  else f[at + 2] = (f[at + 2]! & 0x0f) | (rng.int(16) << 4); // PCP/DEI only: still valid
  return { frame: f, desc: `VLAN tag at ${at}: ${["TPID", "TCI", "PCP/DEI"][which]} ${hex16(u16(f, at))} ${hex16(u16(f, at + 2))}` };
};

// ---- PPPoE ----

const pppoeField: Mutator = (f, t, rng) => {
  const at = t.layout.pppoeOff;
  if (at < 0) return pppoeInsert(f, t, rng);
  const h = at + 2;
  switch (rng.int(5)) {
    case 0:
    case 1: {
      const v = lengthLie(rng, u16(f, h + 4));
      set16(f, h + 4, v);
      return { frame: f, desc: `PPPoE length ${v} (IP packet ${t.layout.l3Len})` };
    }
    case 2: {
      const vt = rng.pick([0x10, 0x12, 0x21, 0x00, 0xff]);
      const code = rng.chance(0.5) ? rng.pick([0x07, 0x09, 0x65, 0xa7]) : 0;
      f[h] = vt;
      f[h + 1] = code;
      return { frame: f, desc: `PPPoE ver/type ${hex16(vt)} code ${hex16(code)}` };
    }
    case 3: {
      const sid = rng.pick([0, 0xffff, rng.int(0x10000)]);
      set16(f, h + 2, sid);
      return { frame: f, desc: `PPPoE session ${hex16(sid)}` };
    }
    default: {
      const p = rng.pick([0xc021, 0x8021, 0x8057, 0x0021, 0x0057, 0x002b, rng.int(0x10000)]);
      set16(f, h + 6, p);
      if (rng.chance(0.3)) set16(f, at, ETH_P_PPP_DISC);
      return { frame: f, desc: `PPP protocol ${hex16(p)}${u16(f, at) === ETH_P_PPP_DISC ? " in a discovery frame" : ""}` };
    }
  }
};

/** A PPPoE session header in front of the IP packet, its length right or a lie. */
const pppoeInsert: Mutator = (f, t, rng) => {
  const L = t.layout;
  if (L.pppoeOff >= 0) return pppoeField(f, t, rng);
  const ppp = L.family === 4 ? 0x0021 : 0x0057;
  const right = L.l3Len + 2;
  const len = rng.chance(0.5) ? right : lengthLie(rng, right);
  const sid = rng.chance(0.9) ? rng.range(1, 0xfffe) : rng.pick([0, 0xffff]);
  const hdr = new Uint8Array([0x88, 0x64, 0x11, 0, sid >> 8, sid & 0xff, len >> 8, len & 0xff, ppp >> 8, ppp & 0xff]);
  return { frame: splice(f, L.etypeOff, 2, hdr), desc: `PPPoE session ${hex16(sid)} length ${len} inserted (right: ${right})` };
};

// ---- DSA ----

/** The tag's port field set to a port without a user device, or one the field cannot hold. */
const dsaPort: Mutator = (f, t, rng) => {
  const L = t.layout;
  if (t.tagger === DSA_TAG_NONE) return dsaJunk(f, t, rng);
  const off = L.prepend ? 0 : L.tagOff;
  const bad: number[] = [];
  for (let p = 0; p < 32; p++) if (!((t.ports >>> p) & 1)) bad.push(p);
  const port = bad.length && rng.chance(0.8) ? rng.pick(bad) : rng.int(32);
  // Each tagger's source-port field (see packet.ts dsaRx).
  switch (t.tagger) {
    case 1: // mtk
    case 2: // qca
      f[off + 1] = (f[off + 1]! & 0xf8) | (port & 7);
      break;
    case 3: // brcm
    case 4: // brcm-prepend
      f[off + 3] = (f[off + 3]! & 0xe0) | (port & 0x1f);
      break;
    case 5: // gswip
      f[off + 7] = (f[off + 7]! & 0x8f) | ((port & 7) << 4);
      break;
    case 6: // dsa
      f[off + 1] = (f[off + 1]! & 0x07) | ((port & 0x1f) << 3);
      break;
    case 7: // edsa
      f[off + 5] = (f[off + 5]! & 0x07) | ((port & 0x1f) << 3);
      break;
    case 8: // rtl8_4
      f[off + 7] = (f[off + 7]! & 0xf0) | (port & 0xf);
      break;
  }
  return { frame: f, desc: `DSA source port field set to ${port}` };
};

const dsaJunk: Mutator = (f, t, rng) => {
  const L = t.layout;
  if (t.tagger === DSA_TAG_NONE || rng.chance(0.2)) {
    // A tag where none belongs (or a second one).
    const tag = rng.bytes(rng.pick([2, 4, 8]));
    const at = rng.chance(0.2) ? 0 : L.prepend + 12;
    return { frame: splice(f, at, 0, tag), desc: `${tag.length} tag bytes inserted at ${at}` };
  }
  const off = L.prepend ? 0 : L.tagOff;
  const len = L.prepend || L.tagLen;
  if (rng.chance(0.3)) return { frame: splice(f, off, len), desc: "DSA tag removed" };
  return { frame: f, desc: `DSA tag bits ${flipBits(f, rng, off, off + len, rng.range(1, 4))}` };
};

/**
 * Bits of each receive tag that say nothing the datapath may act on (class, reason, VID/PCP of
 * an untagged frame, reserved bits ...), by DSA_TAG_*: flipping them must change nothing.
 */
const DSA_IGNORED: Readonly<Record<number, readonly number[]>> = {
  1: [0xff, 0xf8, 0xff, 0xff], // mtk: all but the port bits
  2: [0x38, 0x38], // qca: bits 13-11 and 5-3 (priority, from-CPU)
  3: [0x1f, 0xff, 0x3f, 0xe0], // brcm: class id, reason code, the port byte's top bits
  4: [0x1f, 0xff, 0x3f, 0xe0],
  5: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x8f], // gswip: all but SPPID
  6: [0x00, 0x03, 0xff, 0xff], // dsa: the last bits of byte 1, VID/PCP
  7: [0x00, 0x00, 0xff, 0xff, 0x00, 0x03, 0xff, 0xff], // edsa: reserved bytes too
  8: [0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xf0], // rtl8_4: reason, flags, the port word's top
};

const dsaIgnored: Mutator = (f, t, rng) => {
  const mask = DSA_IGNORED[t.tagger];
  if (!mask) return dsaJunk(f, t, rng);
  const off = t.layout.prepend ? 0 : t.layout.tagOff;
  const flips = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) flips[i] = rng.u32() & mask[i]!;
  for (let i = 0; i < mask.length; i++) f[off + i] = f[off + i]! ^ flips[i]!;
  return { frame: f, desc: `DSA tag bits the format ignores flipped: ${Array.from(flips, (b) => b.toString(16)).join(" ")}` };
};

// ---- The menu ----

/** Mutations aimed at a header count thrice as much in a frame that has that header. */
type Focus = "vlan" | "pppoe" | "dsa";

const MUTATORS: readonly (readonly [number, Mutator, Focus?])[] = [
  [6, truncate],
  [3, pad],
  [8, bitFlips],
  [5, randomBytes],
  [2, insertBytes],
  [2, removeBytes],
  [2, randomFrame],
  [3, ethertype],
  [2, destMac],
  [3, macs],
  [4, v4Length],
  [3, v4Ihl],
  [1, v4Version],
  [3, v4Frag],
  [2, v4Proto],
  [2, v4HeaderByte],
  [2, v4Checksum],
  [2, v4Options],
  [4, v6Field],
  [4, v6Chain],
  [3, ttl],
  [4, tcpDoff],
  [3, tcpFlags],
  [3, udpLength],
  [2, udpChecksum],
  [5, payload],
  [2, ports],
  [4, vlanInsert, "vlan"],
  [2, vlanRemove, "vlan"],
  [3, vlanField, "vlan"],
  [5, pppoeField, "pppoe"],
  [3, pppoeInsert],
  [4, dsaPort, "dsa"],
  [3, dsaJunk, "dsa"],
  [3, dsaIgnored, "dsa"],
];


/** One to three mutations of a copy of frame. */
export function mutate(frame: Uint8Array, t: Target, rng: Rng): Mutated {
  const n = rng.weighted([
    [70, 1],
    [20, 2],
    [10, 3],
  ]);
  const has = { vlan: t.layout.vlanOffs.length > 0, pppoe: t.layout.pppoeOff >= 0, dsa: t.tagger !== DSA_TAG_NONE };
  const menu = MUTATORS.map(([w, m, focus]) => [focus && has[focus] ? 3 * w : w, m] as const);
  let f: Uint8Array = frame.slice();
  const descs: string[] = [];
  for (let i = 0; i < n; i++) {
    const m = rng.weighted(menu)(f, t, rng);
    if (m.frame.length < 14) break; // the kernel takes nothing shorter than an Ethernet header
    f = m.frame;
    descs.push(m.desc);
  }
  // Now and then the L4 checksum is made right again, so that only the mutation is wrong.
  if (rng.chance(0.15)) {
    fixL4(f, t.layout.l3Off, t.layout.family);
    descs.push("L4 checksum recomputed");
  }
  return { frame: f, desc: descs.join("; ") };
}
