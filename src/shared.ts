// One copy of the values many offloaded connections have in common: ingresses (device and
// encapsulation) and next hops. Connections refer to them by a small index (src/connstore.ts);
// a value is dropped when the last connection that refers to it lets go.
// Values are compared field by field with the few recently acquired ones first (new flows mostly
// go to the same few ingresses and next hops), and by a string key only when none matches.
import type { NextHop } from "./nexthop.ts";
import type { Encap } from "./topology.ts";

/** How many recently acquired values are compared before a value's key is built. */
const RECENT = 8;

export interface Ingress {
  ifindex: number;
  encap: Encap;
}

export class Interned<T> {
  private readonly byKey = new Map<string, number>();
  private readonly values: (T | undefined)[] = [];
  private readonly keys: string[] = [];
  private readonly refs: number[] = [];
  private readonly free: number[] = [];
  private readonly recent: number[] = [];
  private nextRecent = 0;

  constructor(
    private readonly keyOf: (v: T) => string,
    private readonly same: (a: T, b: T) => boolean,
  ) {}

  /** The index of a value equal to v, with one more reference. */
  acquire(v: T): number {
    for (const i of this.recent) {
      const x = this.values[i];
      if (x !== undefined && (x === v || this.same(x, v))) return this.hold(i);
    }
    const key = this.keyOf(v);
    const hit = this.byKey.get(key);
    if (hit !== undefined) return this.hold(hit);
    const i = this.free.pop() ?? this.values.length;
    this.values[i] = v;
    this.keys[i] = key;
    this.refs[i] = 1;
    this.byKey.set(key, i);
    this.remember(i);
    return i;
  }

  private hold(i: number): number {
    this.refs[i]!++;
    if (!this.recent.includes(i)) this.remember(i);
    return i;
  }

  private remember(i: number): void {
    this.recent[this.nextRecent] = i;
    this.nextRecent = (this.nextRecent + 1) % RECENT;
  }

  release(i: number): void {
    if (--this.refs[i]! > 0) return;
    this.byKey.delete(this.keys[i]!);
    this.values[i] = undefined;
    this.keys[i] = "";
    this.free.push(i);
  }

  get(i: number): T {
    const v = this.values[i];
    if (v === undefined) throw new Error(`interned value ${i} is not held`);
    return v;
  }

  /** How many distinct values are held. */
  get size(): number {
    return this.byKey.size;
  }
}

/** Equal in every field, as the key says (interned values are the values as given). */
export function equalIngress(a: Ingress, b: Ingress): boolean {
  return a.ifindex === b.ifindex && equalEncap(a.encap, b.encap);
}

/** Equal in every field (unlike flows.ts's "same path" comparison, which ignores the gateway). */
export function equalNextHop(a: NextHop, b: NextHop): boolean {
  return a.oif === b.oif && a.l3Oif === b.l3Oif && a.mtu === b.mtu && a.gatewayFamily === b.gatewayFamily &&
    sameBytes(a.gateway, b.gateway) && sameBytes(a.dmac, b.dmac) && sameBytes(a.smac, b.smac) && equalEncap(a.encap, b.encap);
}

function equalEncap(x: Encap, y: Encap): boolean {
  return x.pppoeSid === y.pppoeSid && x.dsaPort === y.dsaPort && x.vlans.length === y.vlans.length &&
    x.vlans.every((t, i) => t.id === y.vlans[i]!.id && t.proto === y.vlans[i]!.proto);
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === b) return true;
  if (a === null || b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function ingressKey(i: Ingress): string {
  return `${i.ifindex}${encapKey(i.encap)}`;
}

export function hopKey(h: NextHop): string {
  return `${h.oif}/${h.l3Oif}/${h.mtu}/${h.gatewayFamily}/${h.gateway?.join(".") ?? "-"}/${h.dmac.join(".")}/${h.smac.join(".")}${encapKey(h.encap)}`;
}

function encapKey(e: Encap): string {
  return `/${e.vlans.map((t) => `${t.proto}.${t.id}`).join(",")}/${e.pppoeSid ?? "-"}/${e.dsaPort ?? "-"}`;
}
