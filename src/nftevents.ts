// nftables ruleset changes: every committed nftables transaction ends with an NFT_MSG_NEWGEN
// notification on the NFNLGRP_NFTABLES netlink group (nft, fw4 and iptables-nft all commit
// through it). iptables-legacy replaces its tables with a setsockopt and announces nothing.
import { ptr, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { errno } from "../ffi/libc.ts";
import { libmnl, MNL_SOCKET_AUTOPID, SOCK_CLOEXEC, SOCK_NONBLOCK } from "../ffi/mnl.ts";
import { NetlinkError } from "./nexthop.ts";

const NETLINK_NETFILTER = 12;
/** 1 << (NFNLGRP_NFTABLES - 1) */
const NFNLGRP_NFTABLES_MASK = 1 << (7 - 1);
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** How many NFT_MSG_NEWGEN messages are in buf[0, len). */
export function countNewGen(buf: Uint8Array, len: number): number {
  const v = new DataView(buf.buffer, buf.byteOffset, len);
  let n = 0;
  for (let off = 0; off + 16 <= len; ) {
    const msgLen = v.getUint32(off, HOST_LE);
    if (msgLen < 16 || off + msgLen > len) break;
    if (v.getUint16(off + 4, HOST_LE) === ((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)) n++;
    off += (msgLen + 3) & ~3;
  }
  return n;
}

/** A non-blocking subscription to ruleset generation changes; drain() when the fd is readable. */
export class RulesetEvents {
  private sock: Pointer | null;
  private readonly rx = new Uint8Array(new ArrayBuffer(65536));
  private readonly rxPtr = ptr(this.rx);

  constructor(private readonly onChange: () => void) {
    const sock = libmnl.symbols.mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC) as Pointer | null;
    if (sock === null) throw new NetlinkError("socket", errno());
    this.sock = sock;
    if (libmnl.symbols.mnl_socket_bind(sock, NFNLGRP_NFTABLES_MASK, MNL_SOCKET_AUTOPID) < 0) {
      const e = errno();
      this.close();
      throw new NetlinkError("bind to the nftables netlink group", e);
    }
  }

  get fd(): number {
    if (this.sock === null) throw new NetlinkError("socket closed", 9);
    return libmnl.symbols.mnl_socket_get_fd(this.sock);
  }

  /** Calls onChange once if any generation change (or an overflow, which may hide one) waited. */
  drain(): void {
    let changed = false;
    while (this.sock !== null) {
      const n = Number(libmnl.symbols.mnl_socket_recvfrom(this.sock, this.rxPtr, this.rx.length));
      if (n > 0) {
        if (countNewGen(this.rx, n)) changed = true;
        continue;
      }
      const e = errno();
      if (n < 0 && e === constants.errno.ENOBUFS) {
        changed = true;
        continue;
      }
      if (n < 0 && e !== constants.errno.EAGAIN) throw new NetlinkError("receive nftables events", e);
      break;
    }
    if (changed) this.onChange();
  }

  close(): void {
    if (this.sock !== null) libmnl.symbols.mnl_socket_close(this.sock);
    this.sock = null;
  }
}
