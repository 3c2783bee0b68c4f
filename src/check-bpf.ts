// `check`: what the BPF side of the kernel accepts: the bpf() syscall with two do-nothing
// programs, the map types of the datapath, the datapath itself through the verifier, an XDP link
// and a TC filter on the loopback device (added and removed at once), and per interface the XDP
// program already attached or a trial native attach. Needs libbpf: import this module lazily.
import objectPath from "../build/offload.bpf.o" with { type: "file" };
import { ptr, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import { ffiBytes } from "../ffi/buffer.ts";
import { decodeXdpQueryOpts, encodeXdpQueryOpts, libbpf, XDP_QUERY_OPTS_SIZE } from "../ffi/libbpf.ts";
import { close, describeErrno, errno } from "../ffi/libc.ts";
import { type Attachment, attach } from "./attach.ts";
import { BpfError, BpfObject } from "./bpf.ts";
import { type CheckResult, fail, ok, oneLine, warn } from "./check-result.ts";
import { library } from "./check-system.ts";
import "./libbpf-log.ts"; // libbpf's own messages go nowhere
import {
  BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP, libbpfVersion, loadTrivialProgram, MAP_TYPE_NAMES, probeMapType,
} from "./libbpf-probe.ts";

const { EPERM, EACCES, EINVAL, ENOSYS, EBUSY } = constants.errno;
const XDP_PASS = 2;
const TC_ACT_OK = 0;
const CAP_HINT = "run as root with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON";

export function libbpfLine(): CheckResult {
  const v = libbpfVersion();
  const line = library("libbpf", "libbpf.so.1", `v${v.major}.${v.minor}`);
  if (line.status === "ok" && v.major < 1) return fail("libbpf", `${line.detail}: version 1.0 or later needed`, "install libbpf 1.x");
  return line;
}

/** Two do-nothing programs (XDP_PASS, TC_ACT_OK) for the attach checks. */
export interface TrivialPrograms {
  xdp: number;
  tc: number;
  close(): void;
}

export function bpfSyscall(): { result: CheckResult; progs: TrivialPrograms | null } {
  const xdp = loadTrivialProgram(BPF_PROG_TYPE_XDP, XDP_PASS);
  const tc = xdp >= 0 ? loadTrivialProgram(BPF_PROG_TYPE_SCHED_CLS, TC_ACT_OK) : xdp;
  if (xdp >= 0 && tc >= 0) {
    const progs = { xdp, tc, close: () => [xdp, tc].forEach(close) };
    return { result: ok("bpf syscall", "loaded a do-nothing XDP and TC program"), progs };
  }
  if (xdp >= 0) close(xdp);
  const err = -(xdp < 0 ? xdp : tc);
  const what = `loading a do-nothing ${xdp < 0 ? "XDP" : "TC"} program: ${describeErrno(err)}`;
  const hint =
    err === EPERM || err === EACCES ? CAP_HINT
    : err === ENOSYS ? "the kernel has no bpf() syscall: CONFIG_BPF_SYSCALL=y"
    : err === EINVAL ? "the kernel rejects this program type: it needs CONFIG_BPF_SYSCALL and CONFIG_NET_CLS_BPF"
    : "see `dmesg` and the kernel's BPF configuration";
  return { result: fail("bpf syscall", what, hint), progs: null };
}

/** The map types of the datapath object (not libbpf's internal .rodata/.bss maps). */
function datapathMapTypes(image: Uint8Array): number[] {
  const obj = libbpf.symbols.bpf_object__open_mem(ptr(image), image.length, null) as Pointer | null;
  if (obj === null) throw new Error(`the embedded datapath object does not open: ${describeErrno(errno())}`);
  const types = new Set<number>();
  try {
    for (let m = libbpf.symbols.bpf_object__next_map(obj, null) as Pointer | null; m !== null;
      m = libbpf.symbols.bpf_object__next_map(obj, m) as Pointer | null) {
      if (!libbpf.symbols.bpf_map__is_internal(m)) types.add(libbpf.symbols.bpf_map__type(m));
    }
  } finally {
    libbpf.symbols.bpf_object__close(obj);
  }
  return [...types];
}

const typeName = (t: number) => MAP_TYPE_NAMES[t] ?? `type ${t}`;

export function mapTypes(image: Uint8Array): CheckResult {
  const types = datapathMapTypes(image);
  const lacking: string[] = [];
  let denied = 0;
  for (const t of types) {
    const r = probeMapType(t);
    if (r === 0) lacking.push(typeName(t));
    else if (r < 0) denied = -r;
  }
  if (lacking.length) {
    return fail("bpf maps", `the kernel lacks ${lacking.join(", ")}`, "needs Linux 5.8+ (ringbuf) with CONFIG_BPF_SYSCALL");
  }
  if (denied) return fail("bpf maps", `probing map types: ${describeErrno(denied)}`, CAP_HINT);
  return ok("bpf maps", `${types.map(typeName).join(", ")} supported`);
}

/** The line of a verifier log that says why it rejected a program (the one before "processed N insns"). */
export function verifierReason(log: string): string | null {
  const lines = log.split("\n").map((l) => l.trim());
  const i = lines.findIndex((l) => /^processed \d+ insns/.test(l));
  return i > 0 ? (lines[i - 1] ?? null) : null;
}

export function datapath(image: Uint8Array): CheckResult {
  let obj: BpfObject | null = null;
  try {
    obj = BpfObject.open(image);
    obj.load();
    return ok("datapath", "the verifier accepted the XDP and TC programs of offload.bpf.o");
  } catch (e) {
    const reason = e instanceof BpfError ? verifierReason(e.log) : null;
    const err = e instanceof BpfError ? e.errno : 0;
    const hint =
      err === EPERM ? CAP_HINT
      : err === EACCES ? "the verifier refused it: without CAP_PERFMON it rejects the packet pointer arithmetic; otherwise the kernel is too old (5.15+ recommended)"
      : "the kernel lacks a BPF feature the datapath uses (5.15+ recommended)";
    return fail("datapath", `${oneLine(e)}${reason ? ` (verifier: ${reason})` : ""}`, hint);
  } finally {
    obj?.close();
  }
}

export function embeddedDatapath(): Promise<Uint8Array> {
  return Bun.file(objectPath).bytes();
}

/** Attaches and detaches at once: `lo` carries no forwarded traffic, so nothing is disturbed. */
function onLoopback(progs: TrivialPrograms, hook: "xdp-generic" | "tc", item: string, detail: string, hint: string): CheckResult {
  let a: Attachment | null = null;
  try {
    a = attach(progs.xdp, progs.tc, "lo", hook);
    return ok(item, detail);
  } catch (e) {
    const msg = oneLine(e);
    if (/already attached/.test(msg)) return warn(item, msg, "not tested: lo has an XDP program of its own");
    return fail(item, msg, /EPERM|root/.test(msg) ? CAP_HINT : hint);
  } finally {
    a?.detach();
  }
}

export function attachChecks(progs: TrivialPrograms): CheckResult[] {
  return [
    onLoopback(progs, "xdp-generic", "XDP link", "generic XDP attached to lo through a BPF link and detached",
      "BPF links for XDP need Linux 5.9+"),
    onLoopback(progs, "tc", "TC clsact", "clsact qdisc and BPF filter added to lo ingress and removed",
      "the kernel needs clsact and cls_bpf: CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF (OpenWrt: kmod-sched-core, kmod-sched-bpf)"),
  ];
}

/** The id of the XDP program attached to a device in any mode, 0 for none, -errno on failure. */
export function attachedXdpProgram(ifindex: number): number {
  const q = ffiBytes(XDP_QUERY_OPTS_SIZE);
  encodeXdpQueryOpts(q);
  const rc = libbpf.symbols.bpf_xdp_query(ifindex, 0, ptr(q));
  if (rc < 0) return rc;
  const r = decodeXdpQueryOpts(q);
  return r.progId || r.drvProgId || r.skbProgId || r.hwProgId;
}

export type TrialResult = { ok: true; detach(): void } | { ok: false; busy: boolean; message: string };

/** Attaches the do-nothing program in native mode; the caller detaches. */
export function tryNativeXdp(progs: TrivialPrograms, ifname: string): TrialResult {
  try {
    const a = attach(progs.xdp, progs.tc, ifname, "xdp-native");
    return { ok: true, detach: () => a.detach() };
  } catch (e) {
    return { ok: false, busy: (e as { errno?: number }).errno === EBUSY, message: oneLine(e) };
  }
}
