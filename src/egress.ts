// Which egress devices must not receive flows through XDP: XDP redirect skips the egress qdisc,
// so a device with an admin's shaper (SQM's cake, htb, tbf ...) gets its flows through the TC
// program, whose bpf_redirect keeps the qdisc; and native XDP can only redirect into drivers
// that implement ndo_xdp_xmit (the netdev family's xdp-features say so, Linux 6.3+).
import type { Hook } from "./attach.ts";
import { XDP_ACT } from "./xdp-features.ts";

/** Root qdiscs that a system sets up by itself: they queue, they don't shape. */
const DEFAULT_QDISCS = new Set(["noqueue", "noop", "mq", "pfifo_fast", "pfifo", "bfifo", "fq_codel", "fq"]);

export interface EgressFacts {
  hook: Hook;
  /** Kind of the device's root qdisc, null when unknown. */
  rootQdisc: string | null;
  /** NETDEV_XDP_ACT_* bits, null when the kernel can't tell (before 6.3). */
  xdpFeatures: number | null;
}

/**
 * Why flows leaving by this device must take the TC path, or null when XDP may send them.
 * `nativeXdp`: some ingress device runs native XDP (generic XDP transmits through the stack's
 * driver path and needs no ndo_xdp_xmit).
 */
export function tcOnlyReason(f: EgressFacts, nativeXdp: boolean): string | null {
  if (f.hook === "tc") return null;
  if (f.rootQdisc !== null && !DEFAULT_QDISCS.has(f.rootQdisc)) {
    return `its root qdisc ${f.rootQdisc} shapes traffic, which XDP would bypass`;
  }
  if (!nativeXdp) return null;
  // A failed XDP redirect drops the frame: when the kernel can't tell, don't risk it.
  if (f.xdpFeatures === null) return "this kernel (before 6.3) cannot tell whether its driver transmits XDP frames";
  if (!(f.xdpFeatures & XDP_ACT["ndo-xmit"])) return "its driver cannot transmit XDP-redirected frames (no ndo_xdp_xmit)";
  return null;
}
