// The socket side of src/xdp-features.ts: a generic netlink socket through libmnl, and the
// netdev family's XDP features of every device. Needs libmnl: import this module lazily.
import { ptr, type Pointer } from "bun:ffi";
import { describeErrno, errno } from "../ffi/libc.ts";
import { libmnl, MNL_SOCKET_AUTOPID, SOCK_CLOEXEC, SOCK_NONBLOCK } from "../ffi/mnl.ts";
import { buildDevDump, buildGetFamily, parseDev, parseFamilyId, parseMessages } from "./xdp-features.ts";

export class XdpFeaturesError extends Error {}

const NETLINK_GENERIC = 16;
const ENOENT = 2;
const EAGAIN = 11;

/** A non-blocking generic netlink socket: replies, and each part of a dump, are queued by the
 * time sendto() and the previous recvfrom() return, so "no data" means "no reply". */
class GenlSocket {
  private readonly sock: Pointer;
  readonly tx = new Uint8Array(new ArrayBuffer(4096));
  readonly rx = new Uint8Array(new ArrayBuffer(65536));

  constructor() {
    const sock = libmnl.symbols.mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC | SOCK_NONBLOCK) as Pointer | null;
    if (sock === null) throw new XdpFeaturesError(`generic netlink socket: ${describeErrno(errno())}`);
    this.sock = sock;
    if (libmnl.symbols.mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
      const e = errno();
      this.close();
      throw new XdpFeaturesError(`generic netlink bind: ${describeErrno(e)}`);
    }
  }

  /** Sends the request in tx; calls onData per reply message. Returns 0 or the kernel's errno. */
  request(len: number, seq: number, dump: boolean, onData: (attrs: [number, number]) => void): number {
    const s = libmnl.symbols;
    if (Number(s.mnl_socket_sendto(this.sock, ptr(this.tx), len)) < 0) {
      throw new XdpFeaturesError(`generic netlink send: ${describeErrno(errno())}`);
    }
    for (;;) {
      const n = Number(s.mnl_socket_recvfrom(this.sock, ptr(this.rx), this.rx.length));
      if (n < 0) {
        const e = errno();
        throw new XdpFeaturesError(e === EAGAIN ? "generic netlink: no reply" : `generic netlink receive: ${describeErrno(e)}`);
      }
      for (const m of parseMessages(this.rx, n, seq)) {
        if (m.kind === "error") return m.errno;
        if (m.kind === "done") return 0;
        onData(m.attrs);
        if (!dump) return 0;
      }
    }
  }

  close(): void {
    libmnl.symbols.mnl_socket_close(this.sock);
  }
}

/**
 * XDP feature bits by ifindex for every device in this network namespace; null when the kernel
 * has no netdev family (before Linux 6.3).
 */
export function queryXdpFeatures(): Map<number, number> | null {
  const sock = new GenlSocket();
  try {
    let familyId: number | null = null;
    const err = sock.request(buildGetFamily(sock.tx, 1, "netdev"), 1, false, (a) => (familyId = parseFamilyId(sock.rx, a)));
    if (err === ENOENT) return null;
    if (err !== 0) throw new XdpFeaturesError(`generic netlink: resolving family netdev: ${describeErrno(err)}`);
    if (familyId === null) throw new XdpFeaturesError("generic netlink: family netdev without an id");
    const features = new Map<number, number>();
    const dumpErr = sock.request(buildDevDump(sock.tx, 2, familyId), 2, true, (a) => {
      const d = parseDev(sock.rx, a);
      features.set(d.ifindex, d.features);
    });
    if (dumpErr !== 0) throw new XdpFeaturesError(`netdev dev-get: ${describeErrno(dumpErr)}`);
    return features;
  } finally {
    sock.close();
  }
}
