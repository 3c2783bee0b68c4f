// Conntrack access through libnetfilter_conntrack: look up the entry of a flow, decide whether it
// may be offloaded, keep it alive while offloaded, and follow NEW/UPDATE/DESTROY events.
//
// Tuples are converted to and from nfct attributes here: addresses are copied as 4 or 16 raw bytes
// (network order), ports are network order inside nfct and host numbers in Tuple.
import { JSCallback, CString, ptr, read, type Pointer } from "bun:ffi";
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import {
  ATTR_HELPER_NAME,
  ATTR_ID,
  ATTR_MARK,
  ATTR_ORIG_IPV4_DST,
  ATTR_ORIG_IPV4_SRC,
  ATTR_ORIG_IPV6_DST,
  ATTR_ORIG_IPV6_SRC,
  ATTR_ORIG_L3PROTO,
  ATTR_ORIG_L4PROTO,
  ATTR_ORIG_PORT_DST,
  ATTR_ORIG_PORT_SRC,
  ATTR_REPL_IPV4_DST,
  ATTR_REPL_IPV4_SRC,
  ATTR_REPL_IPV6_DST,
  ATTR_REPL_IPV6_SRC,
  ATTR_REPL_PORT_DST,
  ATTR_REPL_PORT_SRC,
  ATTR_STATUS,
  ATTR_TCP_FLAGS_ORIG,
  ATTR_TCP_FLAGS_REPL,
  ATTR_TCP_MASK_ORIG,
  ATTR_TCP_MASK_REPL,
  ATTR_TCP_STATE,
  ATTR_TIMEOUT,
  ATTR_ZONE,
  CONNTRACK,
  IPS_ASSURED,
  IPS_SEEN_REPLY,
  IPS_CONFIRMED,
  IPS_DYING,
  IPS_HELPER,
  IPS_OFFLOAD,
  IPS_SEQ_ADJUST,
  IPS_UNTRACKED,
  IP_CT_TCP_FLAG_BE_LIBERAL,
  NFCT_CB_CONTINUE,
  NFCT_Q_DUMP,
  NFCT_Q_GET,
  NFCT_Q_UPDATE,
  NFCT_T_ALL,
  NFCT_T_DESTROY,
  NFCT_T_NEW,
  TCP_CONNTRACK_ESTABLISHED,
  nfct,
} from "../ffi/conntrack.ts";
import { describeErrno, errno, setNonBlocking, setReceiveBuffer } from "../ffi/libc.ts";
import { formatEndpoint, protoName } from "./addr.ts";
import type { Tuple } from "./nat.ts";

export interface CtEntry {
  id: number;
  orig: Tuple;
  reply: Tuple;
  zone: number;
  mark: number;
  /** IPS_* bits. */
  status: number;
  /** TCP_CONNTRACK_* for TCP, null otherwise. */
  tcpState: number | null;
  helper: string | null;
  /** Seconds left when the kernel reported the entry. */
  timeout: number;
}

/** A failed ctnetlink operation; errno is the system error number. */
export class ConntrackError extends Error {
  constructor(what: string, readonly errno: number) {
    super(`conntrack: ${what}: ${describeErrno(errno)}`);
  }
}

const { ENOENT, EAGAIN, EWOULDBLOCK, EINTR, ENOBUFS, EBADF } = constants.errno;
const PROTO_TCP = 6;
const PROTO_UDP = 17;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** htons and ntohs. */
function swap16(v: number): number {
  return LITTLE_ENDIAN ? ((v & 0xff) << 8) | (v >> 8) : v;
}

const nf = nfct.symbols;

/** Pointer results are typed Pointer | bigint | null; user-space addresses fit in a number. */
function pointer(p: Pointer | bigint | null): Pointer | null {
  return typeof p === "bigint" ? (Number(p) as Pointer) : p;
}

// Per direction: source and destination address attributes (IPv4, IPv6) and port attributes.
const ATTRS = [
  { src4: ATTR_ORIG_IPV4_SRC, dst4: ATTR_ORIG_IPV4_DST, src6: ATTR_ORIG_IPV6_SRC, dst6: ATTR_ORIG_IPV6_DST, sport: ATTR_ORIG_PORT_SRC, dport: ATTR_ORIG_PORT_DST },
  { src4: ATTR_REPL_IPV4_SRC, dst4: ATTR_REPL_IPV4_DST, src6: ATTR_REPL_IPV6_SRC, dst6: ATTR_REPL_IPV6_DST, sport: ATTR_REPL_PORT_SRC, dport: ATTR_REPL_PORT_DST },
] as const;

function readAddr(ct: Pointer, attr: number, len: number): Uint8Array {
  const out = new Uint8Array(16);
  const p = pointer(nf.nfct_get_attr(ct, attr));
  // Byte reads: cheaper than wrapping the C memory in an ArrayBuffer to copy from.
  if (p !== null) for (let i = 0; i < len; i++) out[i] = read.u8(p, i);
  return out;
}

function readTuple(ct: Pointer, dir: 0 | 1, family: 2 | 10, proto: number): Tuple {
  const a = ATTRS[dir];
  const v4 = family === 2;
  const ports = nf.nfct_attr_is_set(ct, a.sport) > 0;
  return {
    family,
    proto,
    src: readAddr(ct, v4 ? a.src4 : a.src6, v4 ? 4 : 16),
    dst: readAddr(ct, v4 ? a.dst4 : a.dst6, v4 ? 4 : 16),
    sport: ports ? swap16(nf.nfct_get_attr_u16(ct, a.sport)) : 0,
    dport: ports ? swap16(nf.nfct_get_attr_u16(ct, a.dport)) : 0,
  };
}

/** Copies an entry out of C memory (valid only during the callback); null for non-IP families. */
function readEntry(ct: Pointer): CtEntry | null {
  const l3 = nf.nfct_get_attr_u8(ct, ATTR_ORIG_L3PROTO);
  if (l3 !== 2 && l3 !== 10) return null;
  const proto = nf.nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  const helper = nf.nfct_attr_is_set(ct, ATTR_HELPER_NAME) > 0 ? pointer(nf.nfct_get_attr(ct, ATTR_HELPER_NAME)) : null;
  return {
    id: nf.nfct_get_attr_u32(ct, ATTR_ID),
    orig: readTuple(ct, 0, l3, proto),
    reply: readTuple(ct, 1, l3, proto),
    zone: nf.nfct_get_attr_u16(ct, ATTR_ZONE),
    mark: nf.nfct_get_attr_u32(ct, ATTR_MARK),
    status: nf.nfct_get_attr_u32(ct, ATTR_STATUS),
    tcpState: proto === PROTO_TCP && nf.nfct_attr_is_set(ct, ATTR_TCP_STATE) > 0 ? nf.nfct_get_attr_u8(ct, ATTR_TCP_STATE) : null,
    helper: helper === null ? null : new CString(helper).toString(),
    timeout: nf.nfct_get_attr_u32(ct, ATTR_TIMEOUT),
  };
}

function describe(t: Tuple): string {
  return `${protoName(t.proto)} ${formatEndpoint(t.family, t.src, t.sport)} -> ${formatEndpoint(t.family, t.dst, t.dport)}`;
}

function entryCallback(body: (type: number, ct: Pointer) => void): JSCallback {
  // A callback that throws or returns nothing would hand 0 (NFCT_CB_STOP) to the library:
  // bodies catch their own errors and the verdict is always explicit.
  return new JSCallback(
    (type: number, ct: Pointer | null): number => {
      if (ct !== null) body(type, ct);
      return NFCT_CB_CONTINUE;
    },
    { args: ["i32", "ptr", "ptr"], returns: "i32" },
  );
}

function openHandle(groups: number, what: string): Pointer {
  const h = pointer(nf.nfct_open(CONNTRACK, groups));
  if (h === null) throw new ConntrackError(`cannot open a ctnetlink socket for ${what} (needs root and nf_conntrack_netlink)`, errno());
  return h;
}

/**
 * One ctnetlink query handle (blocking request/response; the kernel answers at once). Not
 * re-entrant: do not call it from its own callbacks.
 */
export class Conntrack {
  private h: Pointer | null;
  private readonly cb: JSCallback;
  private found: CtEntry | null = null;
  /** During dump(): where each entry goes. */
  private sink: ((e: CtEntry) => void) | null = null;
  private failure: unknown = null;
  // Buffers handed to C: allocated once, on their own ArrayBuffer, and kept referenced.
  private readonly addr = new Uint8Array(new ArrayBuffer(16));
  private readonly addrPtr = ptr(this.addr);

  constructor() {
    this.h = openHandle(0, "queries");
    this.cb = entryCallback((_type, ct) => {
      try {
        const e = readEntry(ct);
        if (this.sink === null) this.found = e;
        else if (e !== null) this.sink(e);
      } catch (e) {
        this.failure ??= e;
      }
    });
    if (nf.nfct_callback_register(this.h, NFCT_T_ALL, this.cb.ptr, null) < 0) {
      const e = errno();
      this.close();
      throw new ConntrackError("cannot register the query callback", e);
    }
  }

  /**
   * The entry one of whose tuples is `t`, or null. The kernel looks a tuple up in both
   * directions, so the tuple of a packet finds its entry whichever direction it travels; compare
   * it with the returned orig and reply to learn the direction.
   */
  get(t: Tuple, zone = 0): CtEntry | null {
    this.found = null;
    this.failure = null;
    const err = this.query(NFCT_Q_GET, t, zone, () => {});
    if (this.failure !== null) throw this.failure;
    if (err === ENOENT) return null;
    if (err !== 0) throw new ConntrackError(`looking up ${describe(t)}`, err);
    return this.found;
  }

  /**
   * Calls onEntry for every entry of the table, all families and zones, in one ctnetlink dump
   * (cheaper than a lookup each; an entry that changes during the dump may be missed). onEntry
   * must not use this handle; its first error is rethrown after the dump.
   */
  dump(onEntry: (e: CtEntry) => void): void {
    if (this.h === null) throw new ConntrackError("dump on a closed handle", EBADF);
    this.failure = null;
    this.sink = onEntry;
    try {
      this.addr.fill(0); // the family to dump: AF_UNSPEC, every one
      if (nf.nfct_query(this.h, NFCT_Q_DUMP, this.addrPtr) < 0) throw new ConntrackError("dumping the table", errno());
    } finally {
      this.sink = null;
    }
    if (this.failure !== null) throw this.failure;
  }

  /** How many entries the table holds now (this network namespace's), null when unknown. */
  count(): number | null {
    try {
      return parseInt(readFileSync(`${SYSCTL_DIR}/nf_conntrack_count`, "utf8"), 10);
    } catch {
      return null;
    }
  }

  /**
   * What the kernel flowtable does to an entry it offloads, as far as ctnetlink allows (it cannot
   * set IPS_OFFLOAD): for TCP, turn off window tracking in both directions ("be liberal") so that
   * packets that return to the kernel path later are not judged by a window that stopped moving;
   * with timeoutSec, also set the timeout in the same update. Returns false when the entry is gone.
   */
  setOffloaded(e: CtEntry, timeoutSec?: number): boolean {
    const tcp = e.orig.proto === PROTO_TCP;
    if (!tcp && timeoutSec === undefined) return true;
    // One update for both: each ctnetlink update also echoes back as an event.
    const err = this.query(NFCT_Q_UPDATE, e.orig, e.zone, (ct) => {
      if (tcp) {
        nf.nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_ORIG, IP_CT_TCP_FLAG_BE_LIBERAL);
        nf.nfct_set_attr_u8(ct, ATTR_TCP_MASK_ORIG, IP_CT_TCP_FLAG_BE_LIBERAL);
        nf.nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_REPL, IP_CT_TCP_FLAG_BE_LIBERAL);
        nf.nfct_set_attr_u8(ct, ATTR_TCP_MASK_REPL, IP_CT_TCP_FLAG_BE_LIBERAL);
      }
      if (timeoutSec !== undefined) nf.nfct_set_attr_u32(ct, ATTR_TIMEOUT, timeoutSec >>> 0);
    });
    if (err === ENOENT) return false;
    if (err !== 0) throw new ConntrackError(`marking ${describe(e.orig)} offloaded`, err);
    return true;
  }

  /**
   * Marks a UDP entry as the kernel would after seeing a stream in both directions (SEEN_REPLY,
   * ASSURED): its packets now take the fast path, so the kernel can't, and an unassured entry
   * is the first one conntrack evicts when its table is full. Updates e.status; false when gone.
   */
  assure(e: CtEntry): boolean {
    const status = e.status | IPS_SEEN_REPLY | IPS_ASSURED;
    const err = this.query(NFCT_Q_UPDATE, e.orig, e.zone, (ct) => nf.nfct_set_attr_u32(ct, ATTR_STATUS, status >>> 0));
    if (err === ENOENT) return false;
    if (err !== 0) throw new ConntrackError(`marking ${describe(e.orig)} assured`, err);
    e.status = status;
    return true;
  }

  /** Sets the entry's timeout to timeoutSec from now; false when the entry is gone. */
  refresh(e: CtEntry, timeoutSec: number): boolean {
    const err = this.query(NFCT_Q_UPDATE, e.orig, e.zone, (ct) => nf.nfct_set_attr_u32(ct, ATTR_TIMEOUT, timeoutSec >>> 0));
    if (err === ENOENT) return false;
    if (err !== 0) throw new ConntrackError(`refreshing the timeout of ${describe(e.orig)}`, err);
    return true;
  }

  close(): void {
    if (this.h === null) return;
    nf.nfct_callback_unregister(this.h);
    nf.nfct_close(this.h);
    this.h = null;
    this.cb.close();
  }

  /** Runs one query on a fresh object holding tuple t; returns 0 or the errno. */
  private query(kind: number, t: Tuple, zone: number, setAttrs: (ct: Pointer) => void): number {
    if (this.h === null) throw new ConntrackError("query on a closed handle", EBADF);
    const ct = pointer(nf.nfct_new());
    if (ct === null) throw new ConntrackError("allocating a conntrack object", errno());
    try {
      const v4 = t.family === 2;
      const a = ATTRS[0];
      nf.nfct_set_attr_u8(ct, ATTR_ORIG_L3PROTO, t.family);
      nf.nfct_set_attr_u8(ct, ATTR_ORIG_L4PROTO, t.proto);
      for (let i = 0; i < 16; i++) this.addr[i] = t.src[i] ?? 0;
      nf.nfct_set_attr(ct, v4 ? a.src4 : a.src6, this.addrPtr);
      for (let i = 0; i < 16; i++) this.addr[i] = t.dst[i] ?? 0;
      nf.nfct_set_attr(ct, v4 ? a.dst4 : a.dst6, this.addrPtr);
      nf.nfct_set_attr_u16(ct, a.sport, swap16(t.sport));
      nf.nfct_set_attr_u16(ct, a.dport, swap16(t.dport));
      if (zone !== 0) nf.nfct_set_attr_u16(ct, ATTR_ZONE, zone);
      setAttrs(ct);
      return nf.nfct_query(this.h, kind, ct) < 0 ? errno() : 0;
    } finally {
      nf.nfct_destroy(ct);
    }
  }
}

export type Offloadable = { ok: true } | { ok: false; reason: string };

const TCP_STATE_NAMES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"];

function tcpStateName(s: number | null): string {
  return s === null ? "unknown" : (TCP_STATE_NAMES[s] ?? String(s));
}

/** Whether the kernel flowtable would take this entry (net/netfilter/nft_flow_offload.c rules). */
export function offloadable(e: CtEntry): Offloadable {
  const no = (reason: string): Offloadable => ({ ok: false, reason });
  const proto = e.orig.proto;
  if (proto !== PROTO_TCP && proto !== PROTO_UDP) return no(`protocol ${protoName(proto)} is not offloaded`);
  if (e.status & IPS_DYING) return no("entry is dying");
  if (!(e.status & IPS_CONFIRMED)) return no("entry not confirmed yet");
  if (e.helper !== null || e.status & IPS_HELPER) return no(`uses conntrack helper ${e.helper ?? "(unnamed)"}`);
  if (e.status & IPS_SEQ_ADJUST) return no("TCP sequence numbers adjusted by a helper");
  // The kernel's IPS_NAT_CLASH (an entry that clashed on insert) is this bit.
  if (e.status & IPS_UNTRACKED) return no("NAT clash entry");
  if (e.status & IPS_OFFLOAD) return no("already offloaded by the kernel flowtable");
  if (proto === PROTO_TCP && e.tcpState !== TCP_CONNTRACK_ESTABLISHED) return no(`TCP state ${tcpStateName(e.tcpState)}, not ESTABLISHED`);
  return { ok: true };
}

const SYSCTL_DIR = "/proc/sys/net/netfilter";
const SYSCTL_CACHE_MS = 5000;
const sysctlCache = new Map<string, { value: number; at: number }>();

/** A conntrack timeout sysctl (per network namespace), re-read at most every 5 s. */
function timeoutSysctl(name: string): number {
  const now = performance.now();
  const hit = sysctlCache.get(name);
  if (hit && now - hit.at < SYSCTL_CACHE_MS) return hit.value;
  const path = `${SYSCTL_DIR}/nf_conntrack_${name}`;
  let value: number;
  try {
    value = parseInt(readFileSync(path, "utf8"), 10);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).errno ?? -ENOENT;
    throw new ConntrackError(`cannot read ${path} (is nf_conntrack loaded?)`, Math.abs(code));
  }
  sysctlCache.set(name, { value, at: now });
  return value;
}

/**
 * The timeout (seconds) the kernel would give the entry now: the sysctl of its TCP state
 * (nf_conntrack_tcp_timeout_established for an offloaded connection), nf_conntrack_udp_timeout_stream
 * for assured UDP and nf_conntrack_udp_timeout otherwise. Pass a copy with another tcpState (e.g.
 * TCP_CONNTRACK_CLOSE after FIN/RST) to get that state's timeout.
 */
export function defaultTimeout(e: CtEntry): number {
  switch (e.orig.proto) {
    case PROTO_TCP: {
      const s = e.tcpState;
      const name = s === null || s === 0 ? "established" : s === 9 ? "syn_sent" : TCP_STATE_NAMES[s]?.toLowerCase() ?? "established";
      return timeoutSysctl(`tcp_timeout_${name}`);
    }
    case PROTO_UDP:
      return timeoutSysctl(e.status & IPS_ASSURED ? "udp_timeout_stream" : "udp_timeout");
    default:
      return timeoutSysctl("generic_timeout");
  }
}

export type ConntrackEventType = "new" | "update" | "destroy";

/**
 * A subscription to conntrack events on a non-blocking socket. Call drain() from a timer; it
 * never blocks. If the kernel had to drop events because the socket buffer was full, drain() sets
 * `overflowed`: the caller's view may be stale and must be resynchronised (re-query what it holds).
 */
const EVENT_BUFFER_BYTES = 8 << 20;

export class ConntrackEvents {
  /** The event socket, readable when events wait. */
  get fd(): number {
    if (this.h === null) throw new ConntrackError("fd of a closed event handle", EBADF);
    return nf.nfct_fd(this.h);
  }

  /** True when the last drain() met a socket overflow (ENOBUFS): events were lost. */
  overflowed = false;
  private h: Pointer | null;
  private readonly cb: JSCallback;
  private handled = 0;
  private failure: unknown = null;

  /** bufferBytes: the socket's receive buffer (the kernel doubles it for bookkeeping). */
  constructor(groups: number, onEvent: (type: ConntrackEventType, e: CtEntry) => void, bufferBytes = EVENT_BUFFER_BYTES) {
    this.h = openHandle(groups, "events");
    this.cb = entryCallback((type, ct) => {
      try {
        const e = readEntry(ct);
        if (e === null) return;
        this.handled++;
        onEvent(type & NFCT_T_DESTROY ? "destroy" : type & NFCT_T_NEW ? "new" : "update", e);
      } catch (err) {
        this.failure ??= err;
      }
    });
    try {
      setNonBlocking(nf.nfct_fd(this.h));
      // Room for tens of thousands of events: a burst of new connections, or the echo of our own
      // timeout refreshes, must not overflow the socket and force a resync.
      setReceiveBuffer(nf.nfct_fd(this.h), bufferBytes);
      if (nf.nfct_callback_register(this.h, NFCT_T_ALL, this.cb.ptr, null) < 0) {
        throw new ConntrackError("cannot register the event callback", errno());
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /**
   * Handles every event queued now and returns how many there were. The first error thrown by
   * the handler is rethrown after the queue is drained (the other events are still handled).
   * Must not be called from inside the handler.
   */
  drain(): number {
    if (this.h === null) throw new ConntrackError("drain on a closed event handle", EBADF);
    this.handled = 0;
    this.failure = null;
    this.overflowed = false;
    for (;;) {
      // Reads and dispatches messages until the socket is empty (EAGAIN) or fails.
      if (nf.nfct_catch(this.h) >= 0) break;
      const err = errno();
      if (err === EAGAIN || err === EWOULDBLOCK) break;
      if (err === ENOBUFS) this.overflowed = true;
      else if (err !== EINTR) throw new ConntrackError("reading events", err);
    }
    if (this.failure !== null) throw this.failure;
    return this.handled;
  }

  /** Not from inside the handler. */
  close(): void {
    if (this.h !== null) {
      nf.nfct_callback_unregister(this.h);
      nf.nfct_close(this.h);
      this.h = null;
      this.cb.close();
    }
  }
}
