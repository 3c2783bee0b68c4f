// `run --dry-run`: which devices the daemon would attach to, with which hook, and why, and which
// devices' flows would take the TC path. Reads the system; attaches nothing.
import type { Hook } from "./attach.ts";
import { describeConduit, planConduits } from "./conduits.ts";
import type { DaemonConfig } from "./daemon.ts";
import { tcOnlyReason } from "./egress.ts";
import { queryXdpFeatures } from "./genl.ts";
import { Rtnl } from "./nexthop.ts";
import { XDP_ACT } from "./xdp-features.ts";

/** The hook `run` would pick for each device (native XDP support from the netdev family). */
export function plannedHooks(choice: DaemonConfig["hook"], devices: readonly number[], native: (ifindex: number) => boolean | null): Map<number, { hook: Hook; why: string }> {
  const out = new Map<number, { hook: Hook; why: string }>();
  const allNative = devices.every((i) => native(i) === true);
  for (const i of devices) {
    const n = native(i);
    const support = n === null ? "native XDP support unknown before Linux 6.3" : n ? "driver has native XDP" : "driver has no native XDP";
    if (choice === "auto") {
      out.set(i, allNative ? { hook: "xdp-native", why: "every device has native XDP" } : { hook: "tc", why: "not every device has native XDP, so tc everywhere" });
    } else if (choice === "xdp") {
      out.set(i, n === false ? { hook: "xdp-generic", why: support } : { hook: "xdp-native", why: support });
    } else {
      out.set(i, { hook: choice, why: choice === "xdp-native" && n === false ? "asked for, but the attach will fail: driver has no native XDP" : "asked for" });
    }
  }
  return out;
}

export function dryRun(cfg: DaemonConfig): string[] {
  const rtnl = new Rtnl({ pppoe: cfg.pppoe, dsa: cfg.dsa });
  try {
    const lines: string[] = [];
    const found = rtnl.lowerDevices(cfg.interfaces.length ? cfg.interfaces : "all", {
      skip: (ifname, reason) => lines.push(`${ifname}: not attached: ${reason}`),
    });
    const conduits = cfg.dsa ? planConduits(rtnl.topology, found) : new Map();
    let features: Map<number, number> | null = null;
    try {
      features = queryXdpFeatures();
    } catch {
      features = null;
    }
    const native = (i: number) => (features ? ((features.get(i) ?? 0) & XDP_ACT.basic) !== 0 : null);
    const hooks = plannedHooks(cfg.hook, found.map((d) => d.ifindex), native);
    const anyNative = [...hooks.values()].some((h) => h.hook === "xdp-native");
    const qdiscs = rtnl.rootQdiscs();
    for (const d of found) {
      const h = hooks.get(d.ifindex)!;
      lines.push(`${d.ifname}: attach ${h.hook} (${h.why}); found as ${d.reason}`);
      const c = conduits.get(d.ifindex);
      if (c) lines.push(`${d.ifname}: ${describeConduit(c)}; a program instance for ${c.tagger}`);
      const why = tcOnlyReason({ hook: h.hook, rootQdisc: qdiscs.get(d.ifindex) ?? null, xdpFeatures: features?.get(d.ifindex) ?? null }, anyNative);
      if (why) lines.push(`${d.ifname}: flows leaving by it would take the TC path (tc attached beside XDP): ${why}`);
    }
    if (!found.length) lines.push("nothing to attach to");
    return lines;
  } finally {
    rtnl.close();
  }
}
