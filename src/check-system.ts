// `check`: what the kernel and the file system offer, read from /proc and /sys without loading
// any library. The parsers take text so that the tests can feed them other machines' files.
import { dlopen } from "bun:ffi";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { release } from "node:os";
import { basename, dirname } from "node:path";
import { findLibrary } from "../ffi/library-path.ts";
import { type CheckResult, fail, ok, oneLine, warn } from "./check-result.ts";

/** Capability numbers (linux/capability.h). */
export const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 } as const;
export type CapName = keyof typeof CAP;

/** The effective capability set from the text of /proc/PID/status. */
export function parseCapEff(status: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(status);
  if (!m?.[1]) throw new Error("no CapEff line in /proc/self/status");
  return BigInt(`0x${m[1]}`);
}

export function hasCap(capEff: bigint, name: CapName): boolean {
  return ((capEff >> BigInt(CAP[name])) & 1n) === 1n;
}

const CAP_HINT =
  "run it as root with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (the verifier needs CAP_PERFMON for the datapath's packet pointer arithmetic)";

/** `run` insists on uid 0; the kernel wants CAP_BPF (or CAP_SYS_ADMIN), CAP_NET_ADMIN and CAP_PERFMON (or CAP_SYS_ADMIN). */
export function privileges(uid: number, capEff: bigint): CheckResult {
  const has = (n: CapName) => hasCap(capEff, n);
  const missing: string[] = [];
  if (!has("BPF") && !has("SYS_ADMIN")) missing.push("CAP_BPF");
  if (!has("NET_ADMIN")) missing.push("CAP_NET_ADMIN");
  if (!has("PERFMON") && !has("SYS_ADMIN")) missing.push("CAP_PERFMON");
  const held = (["BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"] as const).filter(has).map((n) => `CAP_${n}`);
  const who = uid === 0 ? "root" : `uid ${uid}`;
  const caps = held.length ? `effective ${held.join(" ")}` : "no relevant capabilities";
  if (missing.length) return fail("privileges", `${who}, ${caps}; missing ${missing.join(" ")}`, CAP_HINT);
  if (uid !== 0) return fail("privileges", `${who}, ${caps}; \`run\` refuses to start unless it is root`, "start it as root (procd and systemd do)");
  return ok("privileges", `${who}, ${caps}`);
}

/** [major, minor] of a kernel release string such as "6.6.73" or "5.15.0-91-generic". */
export function parseKernelVersion(rel: string): [number, number] | null {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : null;
}

const atLeast = (v: [number, number], major: number, minor: number) => v[0] > major || (v[0] === major && v[1] >= minor);

export function kernel(rel: string): CheckResult {
  const v = parseKernelVersion(rel);
  if (!v) return warn("kernel", `cannot read the version of "${rel}"`, "the BPF lines below tell what works");
  if (!atLeast(v, 5, 9)) {
    return fail("kernel", `Linux ${rel}: too old`, "needs Linux 5.9+ (BPF ring buffer 5.8, XDP BPF links 5.9); 5.15+ recommended");
  }
  return ok("kernel", `Linux ${rel}`);
}

/** Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, which libbpf raises only with CAP_SYS_RESOURCE. */
export function memlock(rel: string, limits: string, capEff: bigint): CheckResult | null {
  const v = parseKernelVersion(rel);
  if (!v || atLeast(v, 5, 11)) return null;
  const soft = /^Max locked memory\s+(\S+)/m.exec(limits)?.[1] ?? "unknown";
  if (soft === "unlimited" || hasCap(capEff, "SYS_RESOURCE")) return ok("memlock", `RLIMIT_MEMLOCK ${soft}`);
  return warn("memlock", `RLIMIT_MEMLOCK ${soft} bytes and no CAP_SYS_RESOURCE: maps may fail with EPERM before Linux 5.11`,
    "raise it: `ulimit -l unlimited`, systemd LimitMEMLOCK=infinity, procd `procd_set_param limits memlock=unlimited`");
}

export function btf(): CheckResult {
  const path = "/sys/kernel/btf/vmlinux";
  if (existsSync(path)) return ok("BTF", `${path} present`);
  return warn("BTF", `no ${path}; the datapath does not need it, the dropper (--drop blackhole|learn) does`,
    "enable CONFIG_DEBUG_INFO_BTF (OpenWrt: CONFIG_KERNEL_DEBUG_INFO_BTF=y)");
}

/** Mount points of bpf file systems, from the text of /proc/self/mountinfo. */
export function bpffsMounts(mountinfo: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (post?.split(" ")[0] === "bpf") out.push(pre?.split(" ")[4] ?? "?");
  }
  return out;
}

const BPFFS = "/sys/fs/bpf";

export function bpffs(mountinfo: string): CheckResult {
  const mounts = bpffsMounts(mountinfo);
  if (mounts.includes(BPFFS)) return ok("bpffs", `mounted at ${BPFFS}`);
  const elsewhere = mounts.length ? ` (mounted at ${mounts.join(", ")} only)` : "";
  return warn("bpffs", `not mounted at ${BPFFS}${elsewhere}: BPF maps cannot be pinned there`, `mount -t bpf bpf ${BPFFS}`);
}

/** "3.8.0" of libfoo.so.3.8.0 (soname libfoo.so.3); null when the file name is the bare soname. */
export function soVersion(file: string, soname: string): string | null {
  const name = basename(file);
  const stem = soname.slice(0, soname.indexOf(".so.") + 4);
  return name.startsWith(`${soname}.`) && stem.length > 4 ? name.slice(stem.length) : null;
}

const LIB_HINTS: Record<string, string> = {
  libbpf: "install libbpf 1.x (OpenWrt: libbpf; Debian: libbpf1)",
  libnetfilter_conntrack: "install libnetfilter_conntrack (OpenWrt: libnetfilter-conntrack; Debian: libnetfilter-conntrack3)",
  libmnl: "install libmnl (OpenWrt: libmnl; Debian: libmnl0)",
};

/** A symbol each library has, for a dlopen that proves it loads. */
const LIB_SYMBOL: Record<string, string> = {
  libbpf: "libbpf_major_version",
  libnetfilter_conntrack: "nfct_open",
  libmnl: "mnl_socket_open2",
};

/** Where a shared library resolves to, and the version in the real file's name. */
export function library(name: string, soname: string, apiVersion?: string): CheckResult {
  let path: string;
  try {
    path = findLibrary([soname]);
  } catch (e) {
    return fail(name, oneLine(e), LIB_HINTS[name] ?? `install ${name}`);
  }
  try {
    dlopen(path, { [LIB_SYMBOL[name] ?? "dlopen"]: { args: [], returns: "void" } }).close();
  } catch (e) {
    return fail(name, oneLine(e), `${LIB_HINTS[name] ?? `install ${name}`}, built for this system's C library`);
  }
  const real = realpathSync(path);
  const version = apiVersion ?? (soVersion(real, soname) ? `so ${soVersion(real, soname)}` : soname);
  const where = dirname(real) === dirname(path) ? real : `${path} -> ${real}`;
  return ok(name, `${version} (${where})`);
}

export function readSysctl(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

export function forwarding(): CheckResult {
  const v4 = readSysctl("/proc/sys/net/ipv4/ip_forward");
  const v6 = readSysctl("/proc/sys/net/ipv6/conf/all/forwarding");
  const detail = `IPv4 ${v4 === "1" ? "on" : "off"}, IPv6 ${v6 === "1" ? "on" : v6 === null ? "absent" : "off"}`;
  if (v4 === "1" || v6 === "1") return ok("forwarding", detail);
  return warn("forwarding", `${detail}: nothing is forwarded, so nothing is offloaded`, "sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
}

/** privileges, kernel and (before 5.11) memlock, from this process's /proc files. */
export function processChecks(): CheckResult[] {
  const capEff = parseCapEff(readFileSync("/proc/self/status", "utf8"));
  const rel = release();
  const ml = memlock(rel, readFileSync("/proc/self/limits", "utf8"), capEff);
  return [privileges(process.getuid?.() ?? 0, capEff), kernel(rel), ...(ml ? [ml] : [])];
}

export function bpfEnvironment(): CheckResult[] {
  return [btf(), bpffs(readFileSync("/proc/self/mountinfo", "utf8"))];
}
