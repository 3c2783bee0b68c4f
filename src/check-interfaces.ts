// `check`: per network interface, what XDP its driver offers (the netdev xdp-features, Linux
// 6.3+), whether an XDP program is attached already, and with --try-attach whether a native
// attach works. The verdict is a pure function of those facts.
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { basename } from "node:path";
import { type CheckResult, fail, ok, warn } from "./check-result.ts";
import { XDP_ACT, xdpFeatureNames } from "./xdp-features.ts";

export interface InterfaceFacts {
  name: string;
  /** 0: no such interface. */
  ifindex: number;
  /** Driver or device type ("virtio_net", "bridge", "veth"), null when unknown. */
  kind: string | null;
  up: boolean;
  /** NETDEV_XDP_ACT_* bits; null when unknown (featuresNote says why). */
  features: number | null;
  featuresNote: string;
  /** The bits while a do-nothing program was attached natively (--try-attach), else null. */
  featuresAttached: number | null;
  /** Id of an XDP program attached already, 0 for none, null when not known. */
  attachedProgram: number | null;
  /** --try-attach: "ok", or the error of the native attach; null when not tried. */
  trial: "ok" | string | null;
}

const GENERIC_HINT = "`--hook auto` then uses tc on every interface; `--hook xdp` uses generic XDP on this one";
const TRY_HINT = "add --try-attach to test native XDP (attaches a do-nothing XDP program for a moment; some drivers reset the link)";

export function interfaceLines(f: InterfaceFacts): CheckResult[] {
  const item = `interface ${f.name}`;
  if (f.ifindex === 0) return [fail(item, "no such interface", "name an existing interface (see `ip link`)")];
  const where = `${f.kind ?? "unknown driver"}, ${f.up ? "up" : "down"}`;
  const out: CheckResult[] = [];
  if (f.attachedProgram) {
    out.push(warn(item, `XDP program id ${f.attachedProgram} attached (${where})`,
      `\`run\` never replaces another XDP program: unless it is ebpf-offloader's own, remove it (ip link set dev ${f.name} xdp off) or use --hook tc`));
  }
  const features = f.featuresAttached ?? f.features;
  if (features !== null) {
    const names = `xdp-features ${xdpFeatureNames(features)}`;
    const native = (features & XDP_ACT.basic) !== 0 && (features & XDP_ACT.redirect) !== 0;
    const xmit = (features & XDP_ACT["ndo-xmit"]) !== 0;
    if (native && xmit) out.push(ok(item, `native XDP with redirect and XDP transmit (${where}; ${names})`));
    else if (native) {
      const now = f.featuresAttached === null ? " now" : "";
      out.push(warn(item, `native XDP, but no XDP transmit${now} (${where}; ${names}): flows leaving through it take the TC path`,
        `a veth transmits once its peer has GRO on or an XDP program${now ? "; some drivers only while an XDP program is attached (--try-attach tells)" : ""}`));
    } else out.push(warn(item, `no native XDP, generic only (${where}; ${names})`, GENERIC_HINT));
    return out;
  }
  if (f.trial === null) out.push(warn(item, `native XDP support unknown (${where}; ${f.featuresNote})`, TRY_HINT));
  else if (f.trial === "ok") {
    out.push(warn(item, `native XDP attach works; XDP transmit unknown (${where}; ${f.featuresNote}): with native XDP, flows leaving through any device take the TC path`,
      "a kernel 6.3+ tells which drivers transmit XDP frames"));
  } else if (/not supported/.test(f.trial)) out.push(warn(item, `no native XDP, generic only (${where})`, GENERIC_HINT));
  else if (!f.attachedProgram) out.push(warn(item, `native XDP attach failed: ${f.trial}`, GENERIC_HINT));
  return out;
}

/** Every interface but loopback, in ifindex order. */
export function allInterfaces(): string[] {
  const index = (n: string) => Number(readSys(n, "ifindex") ?? 0);
  return readdirSync("/sys/class/net").filter((n) => n !== "lo").sort((a, b) => index(a) - index(b));
}

function readSys(ifname: string, file: string): string | null {
  try {
    return readFileSync(`/sys/class/net/${ifname}/${file}`, "utf8").trim();
  } catch {
    return null;
  }
}

/** The driver ("virtio_net"), else the device type from uevent ("bridge", "vlan"), else "virtual". */
export function interfaceKind(ifname: string): string | null {
  try {
    return basename(readlinkSync(`/sys/class/net/${ifname}/device/driver`));
  } catch {
    const devtype = /^DEVTYPE=(.+)$/m.exec(readSys(ifname, "uevent") ?? "")?.[1];
    if (devtype) return devtype;
    return existsSync(`/sys/devices/virtual/net/${ifname}`) ? "virtual" : null;
  }
}

export function isUp(ifname: string): boolean {
  const state = readSys(ifname, "operstate");
  return state === "up" || state === "unknown";
}
