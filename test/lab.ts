// A virtual NAT router lab in three network namespaces, for the end-to-end tests, the demo and
// the benchmarks:
//
//   client (eth0 10.200.1.2, fd00:1::2) -- lan | router | wan -- (eth0 10.200.2.2, fd00:2::2) server
//                                          10.200.1.1      10.200.2.1
//                                          fd00:1::1       fd00:2::1
//
// The router forwards with nftables masquerade on wan (IPv4 and IPv6), drops ct state invalid as
// OpenWrt's fw4 does, and counts what its forward chain sees. Namespace names are unique per lab,
// so several labs and leftovers of crashed runs never collide; destroy() removes everything.

import type { Subprocess } from "bun";

export interface LabOptions {
  /** Namespace name prefix; a random suffix is added. */
  prefix?: string;
  /**
   * true (default): the endpoints send complete checksums, as frames on a wire have. false: they
   * leave checksums to "hardware" (veth), so the router receives CHECKSUM_PARTIAL packets, as it
   * does from containers or VMs on the router itself.
   */
  wireChecksums?: boolean;
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

const RULESET = `
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
    oifname "wan" masquerade
  }
}
`;

export const ADDR = {
  client4: "10.200.1.2",
  routerLan4: "10.200.1.1",
  routerWan4: "10.200.2.1",
  server4: "10.200.2.2",
  client6: "fd00:1::2",
  routerLan6: "fd00:1::1",
  routerWan6: "fd00:2::1",
  server6: "fd00:2::2",
} as const;

export class Lab {
  readonly client: string;
  readonly router: string;
  readonly server: string;
  private destroyed = false;
  private readonly wireChecksums: boolean;

  constructor(opts: LabOptions = {}) {
    this.wireChecksums = opts.wireChecksums ?? true;
    const id = `${opts.prefix ?? "eo"}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    this.client = `${id}-c`;
    this.router = `${id}-r`;
    this.server = `${id}-s`;
  }

  /** Builds the lab; on any failure removes what was built and rethrows. */
  create(): this {
    try {
      for (const ns of [this.client, this.router, this.server]) sh(["ip", "netns", "add", ns]);
      sh(["ip", "-n", this.router, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", this.client]);
      sh(["ip", "-n", this.router, "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", this.server]);
      this.setupHost(this.client, ADDR.client4, ADDR.client6, ADDR.routerLan4, ADDR.routerLan6);
      this.setupHost(this.server, ADDR.server4, ADDR.server6, null, null);
      const r = this.router;
      sh(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
      sh(["ip", "-n", r, "link", "set", "lo", "up"]);
      for (const [dev, a4, a6] of [["lan", ADDR.routerLan4, ADDR.routerLan6], ["wan", ADDR.routerWan4, ADDR.routerWan6]] as const) {
        sh(["ip", "-n", r, "addr", "add", `${a4}/24`, "dev", dev]);
        sh(["ip", "-n", r, "-6", "addr", "add", `${a6}/64`, "dev", dev, "nodad"]);
        sh(["ip", "-n", r, "link", "set", dev, "up"]);
      }
      this.nft(RULESET);
      return this;
    } catch (e) {
      this.destroy();
      throw e;
    }
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
    const r = Bun.spawnSync(["ip", "netns", "exec", this.router, "nft", "-f", "-"], {
      stdin: new TextEncoder().encode(ruleset),
      stderr: "pipe",
    });
    if (r.exitCode !== 0) throw new CommandError(`nft: ${r.stderr.toString().trim()}`);
  }

  /** Packets counted by the router's forward chain (after the invalid check). */
  forwardedPackets(): number {
    return this.counter("forwarded");
  }

  invalidPackets(): number {
    return this.counter("invalid");
  }

  private counter(name: string): number {
    const out = JSON.parse(this.exec(this.router, ["nft", "-j", "list", "counter", "inet", "lab", name])) as {
      nftables: { counter?: { packets: number } }[];
    };
    const c = out.nftables.find((o) => o.counter)?.counter;
    if (!c) throw new CommandError(`no counter ${name}`);
    return c.packets;
  }

  /** Runs a command inside a namespace and returns its stdout. */
  exec(ns: string, cmd: string[], opts: { allowFail?: boolean } = {}): string {
    return sh(["ip", "netns", "exec", ns, ...cmd], opts);
  }

  /** Starts a long-running process inside a namespace, with pipes for stdin, stdout, stderr. */
  spawn(ns: string, cmd: string[]): Subprocess<"pipe", "pipe", "pipe"> {
    return Bun.spawn(["ip", "netns", "exec", ns, ...cmd], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  }

  /** Conntrack entries of the router, as `conntrack -L` prints them. */
  conntrack(args: string[] = []): string {
    return this.exec(this.router, ["conntrack", "-L", ...args], { allowFail: true });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    // Deleting a namespace kills its veth ends (and their peers) and with them any XDP links.
    for (const ns of [this.client, this.router, this.server]) {
      sh(["ip", "netns", "pids", ns], { allowFail: true })
        .split("\n")
        .filter(Boolean)
        .forEach((pid) => sh(["kill", "-9", pid], { allowFail: true }));
      sh(["ip", "netns", "del", ns], { allowFail: true });
    }
  }
}

/** Removes labs left behind by runs that were killed before they could clean up. */
export function removeStaleLabs(prefix: string): void {
  for (const line of sh(["ip", "netns", "list"]).split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^(?:[a-z]+)-([0-9a-z]+)-[0-9a-z]+-[crs]$/.exec(name);
    if (!name.startsWith(`${prefix}-`) || !m?.[1]) continue;
    const pid = parseInt(m[1], 36);
    if (pid !== process.pid && !processAlive(pid)) sh(["ip", "netns", "del", name], { allowFail: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
