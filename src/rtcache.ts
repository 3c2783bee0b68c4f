// What rtnetlink lookups answered, kept until an event says it may have changed. A burst of new
// flows between the same hosts then costs one route, neighbour and link lookup, not one each.
//
// Every entry is dropped by the notification the kernel sends when the thing it describes
// changes (src/rtevents.ts): routes, rules, addresses and netconf by any "routing" event; a
// neighbour by its own event; FDB answers by any FDB event; and everything by a link event
// (carrier, MTU, MAC, up/down; IPv4 routes of a device that goes down vanish without events of
// their own). Events queue while the daemon works, so a flow may be installed from an answer the
// next event invalidates: the same event marks that flow stale (flows.ts), which re-resolves it.
import type { FdbReply, LinkInfo, NeighReply, RouteReply } from "./netlink.ts";
import type { RouteEvent } from "./rtevents.ts";

/** Each map is emptied when it grows past this (many distinct hosts): a bound, not an LRU. */
const MAX_ENTRIES = 8192;

/** The route lookup's answer: the route, or the errno the kernel refused it with. */
export type RouteAnswer = RouteReply | { errno: number; extack: string | null };

export interface RouteKey {
  family: number;
  iif: number;
  mark: number;
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  sport: number;
  dport: number;
}

export class LookupCache {
  private readonly routes = new Map<string, RouteAnswer>();
  private readonly links = new Map<number, LinkInfo | null>();
  private readonly neighs = new Map<string, NeighReply | null>();
  private readonly fdbs = new Map<string, FdbReply | null>();
  private readonly forwardings = new Map<string, boolean>();
  /**
   * Whether a policy routing rule selects on protocol or ports (then a route is cached per
   * protocol and ports too); null until the rules are read again after a routing event.
   */
  l4Rules: boolean | null = null;

  route(k: RouteKey): RouteAnswer | undefined {
    return this.routes.get(this.routeKey(k));
  }

  setRoute(k: RouteKey, a: RouteAnswer): void {
    put(this.routes, this.routeKey(k), a);
  }

  link(ifindex: number): LinkInfo | null | undefined {
    return this.links.get(ifindex);
  }

  setLink(ifindex: number, l: LinkInfo | null): void {
    put(this.links, ifindex, l);
  }

  neigh(family: number, ifindex: number, addr: Uint8Array): NeighReply | null | undefined {
    return this.neighs.get(neighKey(family, ifindex, addr));
  }

  /** null: no entry. Every change of an entry, its creation included, comes with an event. */
  setNeigh(family: number, ifindex: number, addr: Uint8Array, n: NeighReply | null): void {
    put(this.neighs, neighKey(family, ifindex, addr), n);
  }

  fdb(bridge: number, mac: Uint8Array, vid: number): FdbReply | null | undefined {
    return this.fdbs.get(fdbKey(bridge, mac, vid));
  }

  setFdb(bridge: number, mac: Uint8Array, vid: number, f: FdbReply | null): void {
    put(this.fdbs, fdbKey(bridge, mac, vid), f);
  }

  forwarding(family: number, ifindex: number): boolean | undefined {
    return this.forwardings.get(`${family}/${ifindex}`);
  }

  setForwarding(family: number, ifindex: number, on: boolean): void {
    put(this.forwardings, `${family}/${ifindex}`, on);
  }

  /** Drops what the event may have changed. */
  invalidate(e: RouteEvent): void {
    switch (e.kind) {
      case "link":
        return this.clear();
      case "neigh":
        this.neighs.delete(neighKey(e.family, e.ifindex, e.dst));
        return;
      case "fdb":
        this.fdbs.clear();
        return;
      case "routing":
        this.routes.clear();
        this.forwardings.clear();
        this.l4Rules = null;
        return;
      case "qdisc":
        return;
    }
  }

  /** Events were lost: nothing cached can be trusted. */
  clear(): void {
    this.routes.clear();
    this.links.clear();
    this.neighs.clear();
    this.fdbs.clear();
    this.forwardings.clear();
    this.l4Rules = null;
  }

  get size(): number {
    return this.routes.size + this.links.size + this.neighs.size + this.fdbs.size + this.forwardings.size;
  }

  private routeKey(k: RouteKey): string {
    const len = k.family === 2 ? 4 : 16;
    const units = [k.family, k.iif & 0xffff, k.iif >>> 16, k.mark & 0xffff, k.mark >>> 16];
    for (let i = 0; i < len; i += 2) units.push((k.src[i]! << 8) | k.src[i + 1]!, (k.dst[i]! << 8) | k.dst[i + 1]!);
    // Without rules on them, protocol and ports do not change the route (multipath, where they
    // would pick the path, is not offloaded).
    if (this.l4Rules !== false) units.push(k.proto, k.sport, k.dport);
    return String.fromCharCode(...units);
  }
}

function put<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (m.size >= MAX_ENTRIES && !m.has(k)) m.clear();
  m.set(k, v);
}

/** len bytes (even) as 16-bit character codes. */
function bytesKey(b: Uint8Array, len: number): string {
  let out = "";
  for (let i = 0; i < len; i += 2) out += String.fromCharCode((b[i]! << 8) | b[i + 1]!);
  return out;
}

function neighKey(family: number, ifindex: number, addr: Uint8Array): string {
  return `${family}/${ifindex}/${bytesKey(addr, family === 2 ? 4 : 16)}`;
}

function fdbKey(bridge: number, mac: Uint8Array, vid: number): string {
  return `${bridge}/${vid}/${bytesKey(mac, 6)}`;
}
