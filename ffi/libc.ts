// Thin bindings to the few libc functions the daemon needs (glibc or musl, 64-bit Linux).
// Every buffer handed to C is allocated once on its own ArrayBuffer and kept referenced here:
// pointers to small inline typed arrays can go stale (docs: shared notes, bun-ffi pitfall 1).
import { dlopen, ptr, read, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { cString, ffiBytes } from "./buffer.ts";
import { findLibrary } from "./library-path.ts";

const path = findLibrary(["libc.so.6", "libc.so", `ld-musl-${process.arch === "x64" ? "x86_64" : "aarch64"}.so.1`]);

export const libc = dlopen(path, {
  __errno_location: { args: [], returns: "ptr" },
  strerror: { args: ["i32"], returns: "cstring" },
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  if_nametoindex: { args: ["ptr"], returns: "u32" },
  if_indextoname: { args: ["u32", "ptr"], returns: "ptr" },
  fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
  flock: { args: ["i32", "i32"], returns: "i32" },
  epoll_create1: { args: ["i32"], returns: "i32" },
  epoll_ctl: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  pipe2: { args: ["ptr", "i32"], returns: "i32" },
  memfd_create: { args: ["ptr", "u32"], returns: "i32" },
  write: { args: ["i32", "ptr", "usize"], returns: "i64" },
  getpid: { args: [], returns: "i32" },
  vsnprintf: { args: ["ptr", "usize", "ptr", "ptr"], returns: "i32" },
  memcpy: { args: ["ptr", "ptr", "usize"], returns: "ptr" },
  dlsym: { args: ["ptr", "ptr"], returns: "ptr" },
});

const CLOCK_MONOTONIC = 1;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
/** The kernel-internal ENOTSUPP that BPF syscalls sometimes leak to user space. */
const ENOTSUPP = 524;
const IF_NAMESIZE = 16;
const EWOULDBLOCK = 11;

/** A failed system or library call, with its errno. */
export class OsError extends Error {
  constructor(what: string, readonly errno: number) {
    super(`${what}: ${describeErrno(errno)}`);
  }
}

export function errno(): number {
  const p = libc.symbols.__errno_location();
  return p === null ? 0 : read.i32(p as Pointer, 0);
}

const ERRNO_NAMES = new Map<number, string>([[ENOTSUPP, "ENOTSUPP"]]);
// Aliases sharing a number: keep the name the kernel documentation uses.
const PREFERRED = new Set(["EOPNOTSUPP", "EAGAIN", "EDEADLK"]);
for (const [name, value] of Object.entries(constants.errno)) {
  if (!ERRNO_NAMES.has(value) || PREFERRED.has(name)) ERRNO_NAMES.set(value, name);
}

/** The symbolic name of an errno value, e.g. 95 → "EOPNOTSUPP". */
export function errnoName(e: number): string {
  return ERRNO_NAMES.get(Math.abs(e)) ?? `errno ${Math.abs(e)}`;
}

/** "Operation not supported (EOPNOTSUPP)" */
export function describeErrno(e: number): string {
  const n = Math.abs(e);
  const text = n === ENOTSUPP ? "Operation not supported" : (libc.symbols.strerror(n) ?? "Unknown error");
  return `${text} (${errnoName(n)})`;
}

const timespec = new Uint8Array(new ArrayBuffer(16));
const timespecView = new DataView(timespec.buffer);
const timespecPtr = ptr(timespec);

/** CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns(). */
export function monotonicNs(): bigint {
  if (libc.symbols.clock_gettime(CLOCK_MONOTONIC, timespecPtr) !== 0) throw new OsError("clock_gettime", errno());
  return timespecView.getBigInt64(0, true) * 1_000_000_000n + timespecView.getBigInt64(8, true);
}

const ifname = new Uint8Array(new ArrayBuffer(IF_NAMESIZE + 1));
const ifnamePtr = ptr(ifname);
const encoder = new TextEncoder();

/** The index of a network interface in this network namespace, 0 when there is none. */
export function ifNameToIndex(name: string): number {
  const bytes = encoder.encode(name);
  if (bytes.length === 0 || bytes.length >= IF_NAMESIZE || bytes.includes(0)) return 0;
  ifname.fill(0);
  ifname.set(bytes);
  return libc.symbols.if_nametoindex(ifnamePtr);
}

/** The name of a network interface, null when there is none with this index. */
export function ifIndexToName(index: number): string | null {
  ifname.fill(0);
  if (libc.symbols.if_indextoname(index >>> 0, ifnamePtr) === null) return null;
  const end = ifname.indexOf(0);
  return new TextDecoder().decode(ifname.subarray(0, end < 0 ? IF_NAMESIZE : end));
}

export function setNonBlocking(fd: number): void {
  const flags = libc.symbols.fcntl(fd, F_GETFL, 0);
  if (flags < 0 || libc.symbols.fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw new OsError(`setting fd ${fd} non-blocking`, errno());
  }
}

const SOL_SOCKET = 1;
const SO_RCVBUFFORCE = 33;
const intOpt = new Int32Array(new ArrayBuffer(4));

/**
 * Sets a socket's receive buffer, past net.core.rmem_max (SO_RCVBUFFORCE needs CAP_NET_ADMIN),
 * so that a burst of netlink notifications is queued rather than lost.
 */
export function setReceiveBuffer(fd: number, bytes: number): void {
  intOpt[0] = bytes;
  if (libc.symbols.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, intOpt, 4) !== 0) {
    throw new OsError(`setting the receive buffer of fd ${fd}`, errno());
  }
}

const LOCK_EX = 2;
const LOCK_NB = 4;

/** An exclusive lock on an open file; false when another process holds it (released at exit). */
export function tryLock(fd: number): boolean {
  if (libc.symbols.flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = errno();
  if (e === EWOULDBLOCK) return false;
  throw new OsError(`locking fd ${fd}`, e);
}

const EPOLL_CTL_ADD = 1;
const EPOLLIN = 0x1;

/** An epoll instance watching fds for input. */
export function epollWatching(fds: readonly number[]): number {
  const ep = libc.symbols.epoll_create1(O_CLOEXEC);
  if (ep < 0) throw new OsError("epoll_create1", errno());
  const ev = new Uint8Array(new ArrayBuffer(16));
  new DataView(ev.buffer).setUint32(0, EPOLLIN, true);
  for (const fd of fds) {
    if (libc.symbols.epoll_ctl(ep, EPOLL_CTL_ADD, fd, ev) !== 0) {
      const e = errno();
      libc.symbols.close(ep);
      throw new OsError(`epoll_ctl(${fd})`, e);
    }
  }
  return ep;
}

/** An eventfd: writing to it makes it readable (wakes an epoll_wait on it); reads block. */
export function eventFd(): number {
  const fd = libc.symbols.eventfd(0, O_CLOEXEC);
  if (fd < 0) throw new OsError("eventfd", errno());
  return fd;
}

const one = new Uint8Array(new ArrayBuffer(8));
new DataView(one.buffer).setBigUint64(0, 1n, true);

export function signalEventFd(fd: number): void {
  libc.symbols.write(fd, one, 8);
}

const pipeFds = new Int32Array(new ArrayBuffer(8));

/** A pipe, [read end, write end]; the read end does not block. */
export function pipe(): [number, number] {
  if (libc.symbols.pipe2(pipeFds, O_CLOEXEC) !== 0) throw new OsError("pipe2", errno());
  const [r, w] = [pipeFds[0]!, pipeFds[1]!];
  setNonBlocking(r);
  return [r, w];
}

const MFD_CLOEXEC = 1;

/** An anonymous in-memory file holding `bytes` (memfd_create); its path is /proc/self/fd/N. */
export function memoryFile(name: string, bytes: Uint8Array): number {
  const fd = libc.symbols.memfd_create(cString(name), MFD_CLOEXEC);
  if (fd < 0) throw new OsError("memfd_create", errno());
  const copy = ffiBytes(bytes.length);
  copy.set(bytes);
  if (Number(libc.symbols.write(fd, copy, copy.length)) !== copy.length) {
    const e = errno();
    libc.symbols.close(fd);
    throw new OsError("writing a memfd", e);
  }
  return fd;
}

/** The address of a libc function (dlsym with RTLD_DEFAULT), for C code that calls it by pointer. */
export function libcFunction(name: string): Pointer {
  const p = libc.symbols.dlsym(null, cString(name)) as Pointer | null;
  if (p === null) throw new Error(`the C library has no ${name}`);
  return p;
}

export function close(fd: number): void {
  if (libc.symbols.close(fd) !== 0) throw new OsError(`close(${fd})`, errno());
}

export function getpid(): number {
  return libc.symbols.getpid();
}
