// Attaches the datapath to an interface.
//
// XDP goes through a BPF link: the kernel detaches it when the process dies, so traffic falls
// back to the normal stack (fail open). An XDP program someone else attached is never replaced.
// TC goes into the clsact qdisc's ingress with a fixed handle and priority of ours: a filter left
// by a crashed run is replaced, and detach removes the clsact qdisc only if we created it. A TC
// filter outlives the process: the datapath's heartbeat check is what makes it fail open.
import { ptr } from "bun:ffi";
import { constants } from "node:os";
import { ffiBytes } from "../ffi/buffer.ts";
import {
  BPF_TC_EGRESS,
  BPF_TC_F_REPLACE,
  BPF_TC_INGRESS,
  BPF_XDP,
  decodeXdpQueryOpts,
  encodeLinkCreateOpts,
  encodeTcHook,
  encodeTcOpts,
  encodeXdpQueryOpts,
  libbpf,
  LINK_CREATE_OPTS_SIZE,
  TC_HOOK_SIZE,
  TC_OPTS_SIZE,
  XDP_FLAGS_DRV_MODE,
  XDP_FLAGS_SKB_MODE,
  XDP_QUERY_OPTS_SIZE,
} from "../ffi/libbpf.ts";
import { close, describeErrno, errnoName, ifNameToIndex } from "../ffi/libc.ts";
import "./libbpf-log.ts"; // keeps libbpf from writing to stderr

const { EBUSY, EEXIST, EINVAL, ENODEV, ENOENT, EOPNOTSUPP, EPERM } = constants.errno;
/** The kernel-internal ENOTSUPP some drivers return for unsupported XDP modes. */
const ENOTSUPP = 524;

export type Hook = "xdp-native" | "xdp-generic" | "tc";

/** Our TC filter: `tc filter show dev X ingress` lists it as "pref 235 ... handle 0xeb0f". */
export const TC_HANDLE = 0xeb0f;
/** Low enough to run before filters added with default priorities (the kernel picks 49152). */
export const TC_PRIORITY = 235;

export interface Attachment {
  readonly ifindex: number;
  readonly ifname: string;
  readonly hook: Hook;
  /** Removes what attach() added; calling it again does nothing. */
  detach(): void;
}

export class AttachError extends Error {
  override readonly name = "AttachError";

  constructor(
    message: string,
    readonly errno: number = 0,
  ) {
    super(message);
  }
}

export function attach(progFdXdp: number, progFdTc: number, ifname: string, hook: Hook): Attachment {
  const ifindex = ifNameToIndex(ifname);
  if (ifindex === 0) throw new AttachError(`no such interface: ${ifname}`, ENODEV);
  return hook === "tc" ? attachTc(progFdTc, ifname, ifindex) : attachXdp(progFdXdp, ifname, ifindex, hook);
}

function permissionHint(err: number): string {
  return err === EPERM ? " (run as root: CAP_NET_ADMIN and CAP_BPF are needed)" : "";
}

function foreignXdpProgram(ifname: string, ifindex: number): number {
  const q = ffiBytes(XDP_QUERY_OPTS_SIZE);
  encodeXdpQueryOpts(q);
  const rc = libbpf.symbols.bpf_xdp_query(ifindex, 0, ptr(q));
  if (rc < 0) throw new AttachError(`${ifname}: cannot query XDP programs: ${describeErrno(-rc)}${permissionHint(-rc)}`, -rc);
  const r = decodeXdpQueryOpts(q);
  return r.progId || r.drvProgId || r.skbProgId || r.hwProgId;
}

function alreadyAttached(ifname: string, progId: number): AttachError {
  const id = progId ? ` (id ${progId})` : "";
  return new AttachError(
    `${ifname}: another XDP program${id} is already attached; not replacing it (remove it with: ip link set dev ${ifname} xdp off)`,
    EBUSY,
  );
}

function attachXdp(progFd: number, ifname: string, ifindex: number, hook: "xdp-native" | "xdp-generic"): Attachment {
  const mode = hook === "xdp-native" ? "native" : "generic";
  const existing = foreignXdpProgram(ifname, ifindex);
  if (existing) throw alreadyAttached(ifname, existing);

  const opts = ffiBytes(LINK_CREATE_OPTS_SIZE);
  encodeLinkCreateOpts(opts, hook === "xdp-native" ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
  const fd = libbpf.symbols.bpf_link_create(progFd, ifindex, BPF_XDP, ptr(opts));
  if (fd < 0) {
    const err = -fd;
    if (err === EBUSY || err === EEXIST) throw alreadyAttached(ifname, foreignXdpProgram(ifname, ifindex));
    if (err === EOPNOTSUPP || err === ENOTSUPP) {
      throw new AttachError(`${ifname}: XDP ${mode} mode is not supported by this driver (${errnoName(err)})`, err);
    }
    throw new AttachError(`${ifname}: attaching XDP in ${mode} mode failed: ${describeErrno(err)}${permissionHint(err)}`, err);
  }

  let linkFd: number | null = fd;
  return {
    ifindex,
    ifname,
    hook,
    detach(): void {
      if (linkFd === null) return;
      const f = linkFd;
      linkFd = null;
      close(f);
    },
  };
}

function attachTc(progFd: number, ifname: string, ifindex: number): Attachment {
  const hook = ffiBytes(TC_HOOK_SIZE);
  encodeTcHook(hook, ifindex, BPF_TC_INGRESS);
  const created = libbpf.symbols.bpf_tc_hook_create(ptr(hook));
  if (created < 0 && created !== -EEXIST) {
    const err = -created;
    throw new AttachError(`${ifname}: cannot add the clsact qdisc: ${describeErrno(err)}${permissionHint(err)}`, err);
  }
  const weCreatedQdisc = created === 0;

  const opts = ffiBytes(TC_OPTS_SIZE);
  encodeTcOpts(opts, { progFd, flags: BPF_TC_F_REPLACE, handle: TC_HANDLE, priority: TC_PRIORITY });
  const rc = libbpf.symbols.bpf_tc_attach(ptr(hook), ptr(opts));
  if (rc < 0) {
    if (weCreatedQdisc) destroyClsact(hook, ifindex);
    throw new AttachError(`${ifname}: attaching the TC ingress filter failed: ${describeErrno(-rc)}${permissionHint(-rc)}`, -rc);
  }

  let attached = true;
  return {
    ifindex,
    ifname,
    hook: "tc",
    detach(): void {
      if (!attached) return;
      attached = false;
      encodeTcOpts(opts, { progFd: 0, flags: 0, handle: TC_HANDLE, priority: TC_PRIORITY });
      const r = libbpf.symbols.bpf_tc_detach(ptr(hook), ptr(opts));
      // Gone already: the interface was removed, or someone deleted the filter or the qdisc.
      if (r < 0 && r !== -ENOENT && r !== -ENODEV && r !== -EINVAL) {
        throw new AttachError(`${ifname}: removing the TC ingress filter failed: ${describeErrno(-r)}`, -r);
      }
      if (weCreatedQdisc) destroyClsact(hook, ifindex);
    },
  };
}

/** Deletes the clsact qdisc (with every filter in it); a missing one or a vanished device is fine. */
function destroyClsact(hook: Uint8Array, ifindex: number): void {
  encodeTcHook(hook, ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS);
  const r = libbpf.symbols.bpf_tc_hook_destroy(ptr(hook));
  if (r < 0 && r !== -ENOENT && r !== -ENODEV && r !== -EINVAL) {
    throw new AttachError(`removing the clsact qdisc failed: ${describeErrno(-r)}`, -r);
  }
}
