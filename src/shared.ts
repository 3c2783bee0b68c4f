// One copy of the values many offloaded connections have in common: addresses (a few hosts talk
// to many), plain-Ethernet ingresses and next hops. Each connection would otherwise hold its own
// small objects and byte arrays, which is most of the daemon's memory per connection. Shared
// values are never modified.
import type { CtEntry } from "./conntrack.ts";
import type { Tuple } from "./nat.ts";
import type { NextHop } from "./nexthop.ts";
import type { Encap } from "./topology.ts";

/** Each table starts over when it holds this many values (connections keep theirs). */
const MAX_VALUES = 65536;
/** Next hops are few: the last this many distinct ones are compared field by field. */
const RECENT_HOPS = 16;

export interface Ingress {
  ifindex: number;
  encap: Encap;
}

export class SharedValues {
  private readonly v4 = new Map<number, Uint8Array>();
  private readonly v6 = new Map<string, Uint8Array>();
  private readonly ingresses = new Map<number, Ingress>();
  private readonly hops: NextHop[] = [];
  private nextHop = 0;

  /** The entry with its tuples' addresses shared. */
  entry(e: CtEntry): CtEntry {
    return { ...e, orig: this.tuple(e.orig), reply: this.tuple(e.reply) };
  }

  /** Where packets arrive: one object per device for plain Ethernet. */
  ingress(ifindex: number, encap: Encap): Ingress {
    if (!isPlain(encap)) return { ifindex, encap };
    return get(this.ingresses, ifindex, () => ({ ifindex, encap }));
  }

  hop(h: NextHop): NextHop {
    for (const x of this.hops) if (sameNextHop(x, h)) return x;
    this.hops[this.nextHop] = h;
    this.nextHop = (this.nextHop + 1) % RECENT_HOPS;
    return h;
  }

  private tuple(t: Tuple): Tuple {
    return { ...t, src: this.addr(t.family, t.src), dst: this.addr(t.family, t.dst) };
  }

  private addr(family: number, a: Uint8Array): Uint8Array {
    if (family === 2) return get(this.v4, ((a[0]! << 24) | (a[1]! << 16) | (a[2]! << 8) | a[3]!) >>> 0, () => a);
    let key = "";
    for (let i = 0; i < 16; i += 2) key += String.fromCharCode((a[i]! << 8) | a[i + 1]!);
    return get(this.v6, key, () => a);
  }
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameNextHop(a: NextHop, b: NextHop): boolean {
  const [x, y] = [a.encap, b.encap];
  return a.oif === b.oif && a.l3Oif === b.l3Oif && a.mtu === b.mtu && a.gatewayFamily === b.gatewayFamily &&
    sameBytes(a.gateway, b.gateway) && sameBytes(a.dmac, b.dmac) && sameBytes(a.smac, b.smac) &&
    x.pppoeSid === y.pppoeSid && x.dsaPort === y.dsaPort && x.vlans.length === y.vlans.length &&
    x.vlans.every((t, i) => t.id === y.vlans[i]!.id && t.proto === y.vlans[i]!.proto);
}

function isPlain(e: Encap): boolean {
  return e.vlans.length === 0 && e.pppoeSid === null && e.dsaPort === null;
}

function get<K, V>(m: Map<K, V>, k: K, make: () => V): V {
  const hit = m.get(k);
  if (hit !== undefined) return hit;
  if (m.size >= MAX_VALUES) m.clear();
  const v = make();
  m.set(k, v);
  return v;
}
