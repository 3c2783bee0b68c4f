// `check`: conntrack, its event and accounting settings, and ctnetlink through
// libnetfilter_conntrack (imported lazily: a missing library is a fail line, not a crash).
import { type CheckResult, fail, ok, oneLine, warn } from "./check-result.ts";
import { readSysctl } from "./check-system.ts";

const NF = "/proc/sys/net/netfilter";
const LOAD_HINT = "load nf_conntrack: modprobe nf_conntrack (OpenWrt: kmod-nf-conntrack, loaded by the firewall; any NAT or `ct state` rule loads it)";

export function conntrackModule(): CheckResult {
  const max = readSysctl(`${NF}/nf_conntrack_max`);
  if (max === null) return fail("conntrack", `nf_conntrack not loaded (no ${NF}/nf_conntrack_max)`, LOAD_HINT);
  return ok("conntrack", `nf_conntrack loaded, ${readSysctl(`${NF}/nf_conntrack_count`) ?? "?"} of ${max} entries in use`);
}

/** 0: no events (the daemon misses ESTABLISHED and destroyed connections); 1: on; 2: on while someone listens (6.x default). */
export function conntrackEvents(value: string | null): CheckResult {
  if (value === null) return fail("conntrack events", "nf_conntrack_events unreadable (nf_conntrack not loaded?)", LOAD_HINT);
  if (value === "0") {
    return fail("conntrack events", "nf_conntrack_events=0: the daemon would not learn of ESTABLISHED or destroyed connections",
      "sysctl -w net.netfilter.nf_conntrack_events=1");
  }
  return ok("conntrack events", `nf_conntrack_events=${value}`);
}

/** Offloaded packets bypass conntrack, so its counters (nlbwmon, LuCI, conntrack -L) fall short. */
export function conntrackAccounting(value: string | null): CheckResult {
  if (value === null) return fail("conntrack accounting", "nf_conntrack_acct unreadable (nf_conntrack not loaded?)", LOAD_HINT);
  if (value === "0") return ok("conntrack accounting", "nf_conntrack_acct=0 (no per-connection counters that offloading would make short)");
  return warn("conntrack accounting", `nf_conntrack_acct=${value}: conntrack's byte and packet counters miss offloaded packets`,
    "read offloaded traffic from the daemon's flow table (kill -USR1); set net.netfilter.nf_conntrack_acct=0 if short counters mislead (nlbwmon)");
}

/** A query that finds nothing (TEST-NET addresses) and an event subscription, as the daemon makes them. */
export async function ctnetlink(): Promise<CheckResult> {
  const hint = "load nf_conntrack_netlink (OpenWrt: kmod-nf-conntrack-netlink; elsewhere: modprobe nf_conntrack_netlink)";
  try {
    const { Conntrack, ConntrackEvents } = await import("./conntrack.ts");
    const { NF_NETLINK_CONNTRACK_DESTROY } = await import("../ffi/conntrack.ts");
    const ct = new Conntrack();
    try {
      const addr = (last: number) => new Uint8Array([192, 0, 2, last, ...new Array<number>(12).fill(0)]);
      ct.get({ family: 2, proto: 17, src: addr(1), dst: addr(2), sport: 9, dport: 9 });
    } finally {
      ct.close();
    }
    new ConntrackEvents(NF_NETLINK_CONNTRACK_DESTROY, () => {}).close();
    return ok("ctnetlink", "conntrack queries and event subscription work");
  } catch (e) {
    const msg = oneLine(e);
    const why =
      /library/i.test(msg) ? "install libnetfilter_conntrack (OpenWrt: libnetfilter-conntrack)"
      : /EPERM/.test(msg) ? "run as root: ctnetlink needs CAP_NET_ADMIN"
      : hint;
    return fail("ctnetlink", msg, why);
  }
}

export async function netfilterChecks(): Promise<CheckResult[]> {
  const loaded = conntrackModule();
  if (loaded.status === "fail") return [loaded, await ctnetlink()];
  return [
    loaded,
    conntrackEvents(readSysctl(`${NF}/nf_conntrack_events`)),
    conntrackAccounting(readSysctl(`${NF}/nf_conntrack_acct`)),
    await ctnetlink(),
  ];
}
