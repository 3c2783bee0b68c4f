// Resolves where the kernel would forward a flow's packets: egress device, next hop MAC, egress
// MAC and MTU, through synchronous rtnetlink requests on one libmnl socket.
//
// The socket is non-blocking: rtnetlink answers a GET within the sendto() call, so the reply is
// already queued when recvfrom() runs, and a missing reply becomes an error, never a stall.
import { ptr, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { describeErrno, errno } from "../ffi/libc.ts";
import {
  libmnl, MNL_SOCKET_AUTOPID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK, NETLINK_ROUTE,
  SOCK_CLOEXEC, SOCK_NONBLOCK,
} from "../ffi/mnl.ts";
import { AF_INET, AF_INET6 } from "./abi.ts";
import { formatAddr } from "./addr.ts";
import {
  ARPHRD_ETHER, buildLinkGet, buildNeighGet, buildNetconfGet, buildRouteGet, findReply, NETCONFA_IFINDEX_ALL,
  nudName, NUD_DELAY, NUD_NOARP, NUD_PERMANENT, NUD_PROBE, NUD_REACHABLE, NUD_STALE, parseLink, parseNeigh,
  parseNetconfForwarding, parseRoute, routeTypeName, RTN_UNICAST,
  type ErrorReply, type LinkInfo, type MessageRef, type RouteQuery,
} from "./netlink.ts";

export type { LinkInfo, RouteQuery } from "./netlink.ts";

export interface NextHop {
  oif: number;
  /** The route's gateway (16 bytes, IPv4 in the first four), null for a connected destination. */
  gateway: Uint8Array | null;
  /** Family of `gateway`; AF_INET6 for an IPv4 route via an IPv6 next hop (RFC 5549). */
  gatewayFamily: number;
  dmac: Uint8Array;
  smac: Uint8Array;
  /** The egress link MTU, or the route's MTU when that is lower. */
  mtu: number;
}

/** retry: the flow may become offloadable soon without any configuration change. */
export type Resolution = { ok: true; hop: NextHop } | { ok: false; reason: string; retry: boolean };

/** A netlink call that failed: the socket, or the kernel refusing a request. */
export class NetlinkError extends Error {
  constructor(op: string, readonly errno: number, extack: string | null = null) {
    super(`netlink ${op}: ${describeErrno(errno)}${extack ? `: ${extack}` : ""}`);
    this.name = "NetlinkError";
  }
}

const E = constants.errno;
const USABLE_NUD = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT;
const TX_SIZE = 4096;
const RX_SIZE = 65536;

const fail = (reason: string, retry = false): Resolution => ({ ok: false, reason, retry });

/** IPv6 sources ip6_forward() drops unless the packet leaves through the interface it came in on. */
function ipv6SourceConfined(src: Uint8Array): boolean {
  const b0 = src[0]!;
  if (b0 === 0xff || (b0 === 0xfe && (src[1]! & 0xc0) === 0x80)) return true; // multicast, link-local
  for (let i = 0; i < 15; i++) if (src[i] !== 0) return false;
  return src[15]! <= 1; // :: or ::1
}

export class Rtnl {
  private sock: Pointer | null;
  private readonly tx = new Uint8Array(new ArrayBuffer(TX_SIZE));
  private readonly rx = new Uint8Array(new ArrayBuffer(RX_SIZE));
  private readonly txPtr = ptr(this.tx);
  private readonly rxPtr = ptr(this.rx);
  private seq = 0;

  constructor() {
    const sock = libmnl.symbols.mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC) as Pointer | null;
    if (sock === null) throw new NetlinkError("socket", errno());
    this.sock = sock;
    try {
      // Error replies without the echoed request, with the kernel's explanation, strict checks.
      new Int32Array(this.tx.buffer, 0, 1)[0] = 1; // the option value, an int in host byte order
      for (const opt of [NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK]) {
        if (libmnl.symbols.mnl_socket_setsockopt(sock, opt, this.txPtr, 4) < 0) {
          throw new NetlinkError(`setsockopt(${opt})`, errno());
        }
      }
      if (libmnl.symbols.mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) throw new NetlinkError("bind", errno());
    } catch (e) {
      this.close();
      throw e;
    }
  }

  close(): void {
    if (this.sock !== null) libmnl.symbols.mnl_socket_close(this.sock);
    this.sock = null;
  }

  /** Where the kernel would forward the packets of `q`, or why the flow is not offloaded. */
  resolve(q: RouteQuery): Resolution {
    if (q.family === AF_INET6 && !this.forwarding(AF_INET6, NETCONFA_IFINDEX_ALL)) {
      return fail("IPv6 forwarding is disabled (net.ipv6.conf.all.forwarding=0)");
    }
    const reply = this.request("route lookup", (buf, seq) => buildRouteGet(buf, seq, q));
    if ("errno" in reply) return this.routeFailure(q, reply);
    const route = parseRoute(this.rx, reply);
    if (route.type !== RTN_UNICAST) return fail(`${routeTypeName(route.type)} route`);
    if (route.multipath) return fail("multipath route (not offloaded in v1)");
    if (route.encap) return fail("route with lightweight tunnel encapsulation");
    if (route.oif === 0) {
      return fail(route.nhid ? `route via nexthop object ${route.nhid} without net.ipv4.nexthop_compat_mode` : "route without output interface");
    }
    if (q.family === AF_INET6 && route.oif !== q.iif && ipv6SourceConfined(q.src)) {
      return fail(`IPv6 source ${formatAddr(q.family, q.src)} is not forwarded to another interface`);
    }

    const link = this.link(route.oif);
    if (link === null) return fail(`egress interface ${route.oif} not found`);
    if (link.type !== ARPHRD_ETHER) return fail(`egress interface ${link.name} is not Ethernet (ARPHRD ${link.type})`);
    if (!link.up) return fail(`egress interface ${link.name} is down`);

    const nhFamily = route.gateway ? route.gatewayFamily : q.family;
    const nhAddr = route.gateway ?? q.dst;
    const nh = `${formatAddr(nhFamily, nhAddr)} on ${link.name}`;
    const n = this.request("neighbour lookup", (buf, seq) => buildNeighGet(buf, seq, nhFamily, route.oif, nhAddr));
    if ("errno" in n) {
      if (n.errno === E.ENOENT) return fail(`no neighbour entry for ${nh}`, true);
      throw new NetlinkError(`neighbour lookup of ${nh}`, n.errno, n.extack);
    }
    const neigh = parseNeigh(this.rx, n);
    if (neigh.state & NUD_NOARP) return fail(`neighbour ${nh} is NOARP`);
    if (!(neigh.state & USABLE_NUD)) return fail(`neighbour ${nh} is ${nudName(neigh.state)}`, true);
    if (neigh.lladdr?.length !== 6) return fail(`neighbour ${nh} has no Ethernet address`);

    return {
      ok: true,
      hop: {
        oif: route.oif, gateway: route.gateway, gatewayFamily: nhFamily, dmac: neigh.lladdr, smac: link.mac,
        mtu: route.mtu > 0 ? Math.min(route.mtu, link.mtu) : link.mtu,
      },
    };
  }

  /** The interface with this index, null when there is none. */
  link(ifindex: number): LinkInfo | null {
    const reply = this.request("link lookup", (buf, seq) => buildLinkGet(buf, seq, ifindex));
    if (!("errno" in reply)) return parseLink(this.rx, reply);
    if (reply.errno === E.ENODEV) return null;
    throw new NetlinkError(`link lookup of ifindex ${ifindex}`, reply.errno, reply.extack);
  }

  private forwarding(family: number, ifindex: number): boolean {
    const reply = this.request("netconf lookup", (buf, seq) => buildNetconfGet(buf, seq, family, ifindex));
    if ("errno" in reply) throw new NetlinkError(`netconf lookup of ifindex ${ifindex}`, reply.errno, reply.extack);
    return parseNetconfForwarding(this.rx, reply) !== 0;
  }

  /** The kernel refused the input route lookup: say why in an administrator's words. */
  private routeFailure(q: RouteQuery, r: ErrorReply): Resolution {
    switch (r.errno) {
      case E.ENETUNREACH:
        return fail("no route");
      case E.EHOSTUNREACH:
        if (q.family === AF_INET && !this.forwarding(AF_INET, q.iif)) {
          return fail(`IPv4 forwarding is disabled on ingress interface ${this.link(q.iif)?.name ?? q.iif}`);
        }
        return fail("unreachable route");
      case E.EACCES:
        return fail("prohibit route");
      case E.EINVAL:
        return fail("input route lookup refused: blackhole route, martian address or rp_filter");
      case E.ENODEV:
        return fail(`ingress interface ${q.iif} not found`);
      default:
        return fail(`route lookup failed: ${describeErrno(r.errno)}${r.extack ? `: ${r.extack}` : ""}`);
    }
  }

  /** Sends the request `build` writes and returns the reply to it, left in rx. */
  private request(op: string, build: (buf: Uint8Array, seq: number) => number): MessageRef | ErrorReply {
    if (this.sock === null) throw new Error("netlink socket used after close()");
    const seq = ++this.seq;
    const len = build(this.tx, seq);
    if (libmnl.symbols.mnl_socket_sendto(this.sock, this.txPtr, len) < 0) throw new NetlinkError(`${op} send`, errno());
    for (;;) {
      const n = libmnl.symbols.mnl_socket_recvfrom(this.sock, this.rxPtr, RX_SIZE);
      if (n < 0) throw new NetlinkError(`${op} receive`, errno());
      const reply = findReply(this.rx, Number(n), seq);
      if (reply !== null) return reply;
    }
  }
}
