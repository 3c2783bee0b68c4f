// rtnetlink change notifications: links, neighbours, routes, rules and addresses. The daemon
// re-checks the offloaded flows they can affect, so that the fast path never keeps using a next
// hop, a MAC address or a device the kernel no longer would.
import { ptr, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { errno } from "../ffi/libc.ts";
import { libmnl, MNL_SOCKET_AUTOPID, NETLINK_ROUTE, SOCK_CLOEXEC, SOCK_NONBLOCK } from "../ffi/mnl.ts";
import { NetlinkError } from "./nexthop.ts";

/** What changed, as far as offloaded flows care. */
export type RouteEvent =
  | { kind: "link"; ifindex: number; up: boolean; deleted: boolean }
  | { kind: "neigh"; ifindex: number; family: number; dst: Uint8Array; lladdr: Uint8Array | null; state: number; deleted: boolean }
  /** A qdisc added, changed or removed (a shaper may have appeared). */
  | { kind: "qdisc" }
  /** A bridge forwarding-database entry: a station (MAC) learned on, moved to or gone from a port. */
  | { kind: "fdb"; ifindex: number; lladdr: Uint8Array; deleted: boolean }
  | { kind: "routing" };

// Multicast groups (linux/rtnetlink.h): RTMGRP_* bits, and 1 << (RTNLGRP_* - 1) for the rules
// and netconf (forwarding and rp_filter settings, which decide route lookups too).
const GROUPS =
  0x1 /* LINK */ | 0x4 /* NEIGH */ | 0x8 /* TC */ | 0x10 /* IPV4_IFADDR */ | 0x40 /* IPV4_ROUTE */ | 0x80 /* IPV4_RULE */ |
  0x100 /* IPV6_IFADDR */ | 0x400 /* IPV6_ROUTE */ | 0x40000 /* IPV6_RULE */ | 0x800000 /* IPV4_NETCONF */ |
  0x1000000 /* IPV6_NETCONF */;

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const QDISC_TYPES = new Set([36, 37]); // RTM_NEWQDISC, RTM_DELQDISC
const ROUTING_TYPES = new Set([20, 21, 24, 25, 32, 33, 80, 81]); // NEW/DELADDR, NEW/DELROUTE, NEW/DELRULE, NEW/DELNETCONF
const AF_BRIDGE = 7;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decodes the notifications in buf[0, len); messages of other types are skipped. */
export function parseRouteEvents(buf: Uint8Array, len: number): RouteEvent[] {
  const v = new DataView(buf.buffer, buf.byteOffset, len);
  const out: RouteEvent[] = [];
  for (let off = 0; off + 16 <= len; ) {
    const msgLen = v.getUint32(off, HOST_LE);
    const type = v.getUint16(off + 4, HOST_LE);
    if (msgLen < 16 || off + msgLen > len) break;
    const body = off + 16;
    const end = off + msgLen;
    if ((type === RTM_NEWLINK || type === RTM_DELLINK) && end - body >= 16) {
      const flags = v.getUint32(body + 8, HOST_LE);
      out.push({
        kind: "link", ifindex: v.getInt32(body + 4, HOST_LE),
        up: (flags & (IFF_UP | IFF_RUNNING)) === (IFF_UP | IFF_RUNNING), deleted: type === RTM_DELLINK,
      });
    } else if ((type === RTM_NEWNEIGH || type === RTM_DELNEIGH) && end - body >= 12) {
      const ev = { family: v.getUint8(body), ifindex: v.getInt32(body + 4, HOST_LE), state: v.getUint16(body + 8, HOST_LE) };
      let dst: Uint8Array | null = null;
      let lladdr: Uint8Array | null = null;
      for (let a = body + 12; a + 4 <= end; ) {
        const alen = v.getUint16(a, HOST_LE);
        if (alen < 4 || a + alen > end) break;
        const atype = v.getUint16(a + 2, HOST_LE) & 0x3fff;
        if (atype === NDA_DST) {
          dst = new Uint8Array(16);
          dst.set(buf.subarray(a + 4, a + Math.min(alen, 20)));
        } else if (atype === NDA_LLADDR) lladdr = buf.slice(a + 4, a + alen);
        a += (alen + 3) & ~3;
      }
      if (ev.family === AF_BRIDGE && lladdr?.length === 6) out.push({ kind: "fdb", ifindex: ev.ifindex, lladdr, deleted: type === RTM_DELNEIGH });
      else if (dst) out.push({ kind: "neigh", ...ev, dst, lladdr, deleted: type === RTM_DELNEIGH });
    } else if (QDISC_TYPES.has(type)) {
      out.push({ kind: "qdisc" });
    } else if (ROUTING_TYPES.has(type)) {
      out.push({ kind: "routing" });
    }
    off += (msgLen + 3) & ~3;
  }
  return out;
}

/** A non-blocking subscription; drain() from a timer. */
export class RouteEvents {
  /** True when the last drain() met a socket overflow: changes were lost, re-check everything. */
  overflowed = false;
  private sock: Pointer | null;
  private readonly rx = new Uint8Array(new ArrayBuffer(65536));
  private readonly rxPtr = ptr(this.rx);

  constructor(private readonly onEvent: (e: RouteEvent) => void) {
    const sock = libmnl.symbols.mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC) as Pointer | null;
    if (sock === null) throw new NetlinkError("socket", errno());
    this.sock = sock;
    if (libmnl.symbols.mnl_socket_bind(sock, GROUPS, MNL_SOCKET_AUTOPID) < 0) {
      const e = errno();
      this.close();
      throw new NetlinkError("bind to rtnetlink groups", e);
    }
  }

  /** The socket, readable when notifications wait. */
  get fd(): number {
    if (this.sock === null) throw new NetlinkError("socket closed", 9);
    return libmnl.symbols.mnl_socket_get_fd(this.sock);
  }

  drain(): void {
    this.overflowed = false;
    while (this.sock !== null) {
      const n = Number(libmnl.symbols.mnl_socket_recvfrom(this.sock, this.rxPtr, this.rx.length));
      if (n > 0) {
        for (const e of parseRouteEvents(this.rx, n)) this.onEvent(e);
        continue;
      }
      const e = errno();
      if (n < 0 && e === constants.errno.ENOBUFS) {
        this.overflowed = true;
        continue;
      }
      if (n < 0 && e !== constants.errno.EAGAIN) throw new NetlinkError("receive rtnetlink events", e);
      return;
    }
  }

  close(): void {
    if (this.sock !== null) libmnl.symbols.mnl_socket_close(this.sock);
    this.sock = null;
  }
}
