// A virtual NAT router lab in three network namespaces, for the end-to-end tests, the demo and
// the benchmarks:
//
//   client (eth0 10.200.1.2, fd00:1::2) -- lan | router | wan -- (eth0 10.200.2.2, fd00:2::2) server
//                                                          | wan2 -- (eth0 10.200.3.2, fd00:3::2) server2
//
// server2 and wan2 exist with `secondWan`: then both servers also answer for a service address
// (10.200.9.9, fd00:9::9) that the router reaches via server, until a test moves the route.
// With `bridgeLan` the LAN is a bridge br-lan (the router's LAN addresses) with two ports:
// lan1 to client and lan2 to client2 (eth0 10.200.1.3, fd00:1::3), as on an OpenWrt router.
//                                          10.200.1.1      10.200.2.1
//                                          fd00:1::1       fd00:2::1
//
// The router forwards with nftables masquerade on wan (IPv4 and IPv6), drops ct state invalid as
// OpenWrt's fw4 does, and counts what its forward chain sees. Namespace names are unique per lab,
// so several labs and leftovers of crashed runs never collide; destroy() removes everything.

import type { Subprocess } from "bun";
import { processAlive } from "../src/status.ts";

export interface LabOptions {
  /** Namespace name prefix; a random suffix is added. */
  prefix?: string;
  /**
   * true (default): the endpoints send complete checksums, as frames on a wire have. false: they
   * leave checksums to "hardware" (veth), so the router receives CHECKSUM_PARTIAL packets, as it
   * does from containers or VMs on the router itself.
   */
  wireChecksums?: boolean;
  /** Adds server2 behind wan2 and the service address reachable through either server. */
  secondWan?: boolean;
  /** The LAN as a bridge br-lan with ports lan1 (client) and lan2 (client2). */
  bridgeLan?: boolean;
}

export class CommandError extends Error {}

/** Runs a command, throwing with its stderr when it fails. */
export function sh(cmd: string[], opts: { allowFail?: boolean } = {}): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !opts.allowFail) {
    throw new CommandError(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  }
  return r.stdout.toString();
}

/**
 * The lab router's ruleset: counters of forwarded and invalid packets (invalid ones dropped, as
 * fw4 does) and masquerade out of the WAN devices.
 */
export function natRuleset(wan: string[]): string {
  return `
table inet lab {
  counter forwarded {}
  counter invalid {}
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state invalid counter name "invalid" drop
    counter name "forwarded"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname { ${wan.map((d) => `"${d}"`).join(", ")} } masquerade
  }
}
`;
}

export const ADDR = {
  client4: "10.200.1.2",
  routerLan4: "10.200.1.1",
  routerWan4: "10.200.2.1",
  server4: "10.200.2.2",
  client6: "fd00:1::2",
  routerLan6: "fd00:1::1",
  routerWan6: "fd00:2::1",
  server6: "fd00:2::2",
  client2_4: "10.200.1.3",
  client2_6: "fd00:1::3",
  routerWan2_4: "10.200.3.1",
  server2_4: "10.200.3.2",
  routerWan2_6: "fd00:3::1",
  server2_6: "fd00:3::2",
  service4: "10.200.9.9",
  service6: "fd00:9::9",
} as const;

export class Lab {
  readonly client: string;
  readonly router: string;
  readonly server: string;
  readonly server2: string;
  readonly client2: string;
  private destroyed = false;
  private readonly bridgeLan: boolean;
  private readonly wireChecksums: boolean;
  private readonly secondWan: boolean;

  constructor(opts: LabOptions = {}) {
    this.wireChecksums = opts.wireChecksums ?? true;
    this.secondWan = opts.secondWan ?? false;
    this.bridgeLan = opts.bridgeLan ?? false;
    const id = `${opts.prefix ?? "eo"}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    this.client = `${id}-c`;
    this.router = `${id}-r`;
    this.server = `${id}-s`;
    this.server2 = `${id}-t`;
    this.client2 = `${id}-d`;
  }

  /** Builds the lab; on any failure removes what was built and rethrows. */
  create(): this {
    try {
      for (const ns of this.namespaces()) sh(["ip", "netns", "add", ns]);
      const r = this.router;
      const lan = this.bridgeLan ? "br-lan" : "lan";
      if (this.bridgeLan) {
        sh(["ip", "-n", r, "link", "add", "br-lan", "type", "bridge"]);
        for (const [port, ns] of [["lan1", this.client], ["lan2", this.client2]] as const) {
          sh(["ip", "-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
          sh(["ip", "-n", r, "link", "set", port, "master", "br-lan", "up"]);
        }
        this.setupHost(this.client2, ADDR.client2_4, ADDR.client2_6, ADDR.routerLan4, ADDR.routerLan6);
      } else {
        sh(["ip", "-n", r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", this.client]);
      }
      sh(["ip", "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", this.server]);
      this.setupHost(this.client, ADDR.client4, ADDR.client6, ADDR.routerLan4, ADDR.routerLan6);
      this.setupHost(this.server, ADDR.server4, ADDR.server6, null, null);
      sh(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
      sh(["ip", "-n", r, "link", "set", "lo", "up"]);
      for (const [dev, a4, a6] of [[lan, ADDR.routerLan4, ADDR.routerLan6], ["wan", ADDR.routerWan4, ADDR.routerWan6]] as const) {
        sh(["ip", "-n", r, "addr", "add", `${a4}/24`, "dev", dev]);
        sh(["ip", "-n", r, "-6", "addr", "add", `${a6}/64`, "dev", dev, "nodad"]);
        sh(["ip", "-n", r, "link", "set", dev, "up"]);
      }
      this.nft(natRuleset(["wan", "wan2"]));
      if (this.secondWan) this.createSecondWan();
      return this;
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private namespaces(): string[] {
    return [
      this.client, this.router, this.server,
      ...(this.secondWan ? [this.server2] : []), ...(this.bridgeLan ? [this.client2] : []),
    ];
  }

  private createSecondWan(): void {
    const r = this.router;
    sh(["ip", "-n", r, "link", "add", "wan2", "type", "veth", "peer", "name", "eth0", "netns", this.server2]);
    this.setupHost(this.server2, ADDR.server2_4, ADDR.server2_6, ADDR.routerWan2_4, ADDR.routerWan2_6);
    sh(["ip", "-n", r, "addr", "add", `${ADDR.routerWan2_4}/24`, "dev", "wan2"]);
    sh(["ip", "-n", r, "-6", "addr", "add", `${ADDR.routerWan2_6}/64`, "dev", "wan2", "nodad"]);
    sh(["ip", "-n", r, "link", "set", "wan2", "up"]);
    sh(["ip", "-n", this.server, "route", "add", "default", "via", ADDR.routerWan4]);
    sh(["ip", "-n", this.server, "-6", "route", "add", "default", "via", ADDR.routerWan6]);
    for (const ns of [this.server, this.server2]) {
      sh(["ip", "-n", ns, "addr", "add", `${ADDR.service4}/32`, "dev", "lo"]);
      sh(["ip", "-n", ns, "-6", "addr", "add", `${ADDR.service6}/128`, "dev", "lo", "nodad"]);
      // Tell the router at once when a test changes a server's MAC address.
      sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_notify=1", "net.ipv4.conf.eth0.arp_notify=1"]);
    }
    sh(["ip", "-n", r, "route", "add", `${ADDR.service4}/32`, "via", ADDR.server4, "dev", "wan"]);
    sh(["ip", "-n", r, "-6", "route", "add", `${ADDR.service6}/128`, "via", ADDR.server6, "dev", "wan"]);
  }

  private setupHost(ns: string, a4: string, a6: string, gw4: string | null, gw6: string | null): void {
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    sh(["ip", "-n", ns, "addr", "add", `${a4}/24`, "dev", "eth0"]);
    sh(["ip", "-n", ns, "-6", "addr", "add", `${a6}/64`, "dev", "eth0", "nodad"]);
    sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
    // GRO gives the veth the NAPI instance that XDP-redirected frames need to be received.
    sh(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", this.wireChecksums ? "off" : "on", "gro", "on"]);
    if (gw4) sh(["ip", "-n", ns, "route", "add", "default", "via", gw4]);
    if (gw6) sh(["ip", "-n", ns, "-6", "route", "add", "default", "via", gw6]);
  }

  /** Loads an nftables ruleset into the router. */
  nft(ruleset: string): void {
    loadRuleset(this.router, ruleset);
  }

  /** Packets counted by the router's forward chain (after the invalid check). */
  forwardedPackets(): number {
    return nftCounter(this.router, "forwarded");
  }

  invalidPackets(): number {
    return nftCounter(this.router, "invalid");
  }

  /** Runs a command inside a namespace and returns its stdout. */
  exec(ns: string, cmd: string[], opts: { allowFail?: boolean } = {}): string {
    return sh(["ip", "netns", "exec", ns, ...cmd], opts);
  }

  /** Starts a long-running process inside a namespace, with pipes for stdin, stdout, stderr. */
  spawn(ns: string, cmd: string[]): Subprocess<"pipe", "pipe", "pipe"> {
    return Bun.spawn(["ip", "netns", "exec", ns, ...cmd], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  }

  /** Packets a device of the router received, from its kernel counters. */
  rxPackets(dev: string): number {
    const [link] = JSON.parse(this.exec(this.router, ["ip", "-j", "-s", "link", "show", dev])) as { stats64: { rx: { packets: number } } }[];
    if (!link) throw new CommandError(`no device ${dev}`);
    return link.stats64.rx.packets;
  }

  /** Conntrack entries of the router, as `conntrack -L` prints them. */
  conntrack(args: string[] = []): string {
    return this.exec(this.router, ["conntrack", "-L", ...args], { allowFail: true });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // Deleting a namespace kills its veth ends (and their peers) and with them any XDP links.
    for (const ns of this.namespaces()) {
      sh(["ip", "netns", "pids", ns], { allowFail: true })
        .split("\n")
        .filter(Boolean)
        .forEach((pid) => sh(["kill", "-9", pid], { allowFail: true }));
      sh(["ip", "netns", "del", ns], { allowFail: true });
    }
  }
}

/** Loads an nftables ruleset in a namespace. */
export function loadRuleset(ns: string, ruleset: string): void {
  const r = Bun.spawnSync(["ip", "netns", "exec", ns, "nft", "-f", "-"], {
    stdin: new TextEncoder().encode(ruleset),
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new CommandError(`nft: ${r.stderr.toString().trim()}`);
}

/** Packets of the named counter in a namespace's `inet lab` table (both labs' routers have one). */
export function nftCounter(ns: string, name: string): number {
  const out = JSON.parse(sh(["ip", "netns", "exec", ns, "nft", "-j", "list", "counter", "inet", "lab", name])) as {
    nftables: { counter?: { packets: number } }[];
  };
  const c = out.nftables.find((o) => o.counter)?.counter;
  if (!c) throw new CommandError(`no counter ${name}`);
  return c.packets;
}

/**
 * UDP datagrams a namespace's sockets dropped for a full receive or send buffer (/proc/net/snmp):
 * lost by an endpoint too slow to keep up (bun starved under emulation), not by the router.
 */
export function udpSocketDrops(ns: string): number {
  const [head, vals] = sh(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).split("\n")
    .filter((l) => l.startsWith("Udp:")).map((l) => l.split(/\s+/));
  const column = (name: string) => {
    const i = head?.indexOf(name) ?? -1;
    if (i < 0) throw new CommandError(`no Udp ${name} in ${ns}'s /proc/net/snmp`);
    return Number(vals?.[i]);
  };
  return column("RcvbufErrors") + column("SndbufErrors");
}

/** Removes labs left behind by runs that were killed before they could clean up. */
export function removeStaleLabs(prefix: string): void {
  for (const line of sh(["ip", "netns", "list"]).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^(?:[a-z]+)-([0-9a-z]+)-[0-9a-z]+-[crstd]$/.exec(name);
    if (!name.startsWith(`${prefix}-`) || !m?.[1]) continue;
    const pid = parseInt(m[1], 36);
    if (pid !== process.pid && !processAlive(pid)) sh(["ip", "netns", "del", name], { allowFail: true });
  }
}
