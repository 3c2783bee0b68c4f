// The OpenWrt router lab, for inside the VM (the host kernel has no 802.1Q, PPPoE or flowtable):
//
//   client (eth0 10.200.1.2, fd00:1::2) -- lan1 | br-lan  router  wan > wan.7 > pppoe-wan | -- eth0 > eth0.7 > ppp0  isp
//                                          10.200.1.1, fd00:1::1        100.64.0.2, 2001:db8:64::2     100.64.0.1
//
// The ISP runs pppoe-server (kernel-mode PPPoE, session id 0x1234) on its VLAN device and is also
// the far end of the traffic (203.0.113.10, 2001:db8:ff::10 on its loopback). The router runs pppd
// with the rp-pppoe plugin as OpenWrt does ("ifname pppoe-wan ... nic-wan.7"), NATs with
// nftables masquerade on pppoe-wan and counts what its forward chain sees (table inet lab, as in
// test/lab.ts). With `qinq` the WAN is an 802.1ad S-tag 100 around the C-tag 7 (wan.100.7).
// Namespace names are unique per lab; destroy() removes everything, pppd and pppoe-server included.
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync, symlinkSync } from "node:fs";
import { CommandError, loadRuleset, natRuleset, sh } from "../lab.ts";
import { VmRouterLab } from "./router-lab.ts";

export const VADDR = {
  client4: "10.200.1.2",
  client6: "fd00:1::2",
  routerLan4: "10.200.1.1",
  routerLan6: "fd00:1::1",
  routerWan4: "100.64.0.2",
  isp4: "100.64.0.1",
  routerWan6: "2001:db8:64::2",
  server4: "203.0.113.10",
  server6: "2001:db8:ff::10",
} as const;

/** The session id pppoe-server hands out first: its -o offset plus one. */
export const PPPOE_SID = 0x1234;

export interface VlanLayer {
  proto: "802.1Q" | "802.1ad";
  id: number;
}

export interface PppoeLabOptions {
  /** VLAN tags on the WAN, outer first; default: 802.1Q 7. */
  vlans?: VlanLayer[];
  /** pppd's interface name (OpenWrt: pppoe-wan); null: pppd's own (ppp0) and no "ifname" option. */
  pppIfname?: string | null;
  /** The router's forward/postrouting rules instead of the default (masquerade on the PPP device). */
  ruleset?: (ppp: string) => string;
}

export const PPP_IF = "pppoe-wan";

const PLUGIN_DIR = "/etc/ppp/plugins";

/** pppoe-server -k runs pppd with /etc/ppp/plugins/rp-pppoe.so, which Debian's ppp does not ship there. */
function ensurePluginLink(): void {
  if (existsSync(`${PLUGIN_DIR}/rp-pppoe.so`)) return;
  const found = sh(["sh", "-c", "ls /usr/lib/pppd/*/rp-pppoe.so | head -1"]).trim();
  if (!found) throw new CommandError("rp-pppoe.so not found: apt-get install ppp");
  mkdirSync(PLUGIN_DIR, { recursive: true });
  symlinkSync(found, `${PLUGIN_DIR}/rp-pppoe.so`);
}

export class PppoeLab extends VmRouterLab {
  readonly client: string;
  readonly router: string;
  readonly isp: string;
  readonly vlans: VlanLayer[];
  readonly ppp: string;
  /** The router's Ethernet device the session runs on (wan.7, wan.100.7). */
  readonly sessionDev: string;
  /** The ISP's PPP interface, known once the session is up. */
  ispPpp = "";
  private readonly dir = mkdtempSync("/tmp/eo-vm-lab-");

  constructor(private readonly opts: PppoeLabOptions = {}) {
    super();
    // Overwrites /etc/ppp files: only where the root is a throwaway overlay.
    if (process.env.EO_VM !== "1") throw new Error("PppoeLab runs only inside the test VM (EO_VM=1)");
    const id = `vm-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
    this.client = `${id}-c`;
    this.router = `${id}-r`;
    this.isp = `${id}-i`;
    this.vlans = opts.vlans ?? [{ proto: "802.1Q", id: 7 }];
    this.ppp = opts.pppIfname === undefined ? PPP_IF : (opts.pppIfname ?? "ppp0");
    this.sessionDev = ["wan", ...this.vlans.map((v) => v.id)].join(".");
  }

  /** Builds the lab and brings the PPPoE session up; on any failure removes what was built. */
  async create(): Promise<this> {
    try {
      ensurePluginLink();
      for (const ns of [this.client, this.router, this.isp]) {
        sh(["ip", "netns", "add", ns]);
        sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
      }
      const [c, r, i] = [this.client, this.router, this.isp];
      // LAN: a bridge with one port, as on OpenWrt.
      sh(["ip", "-n", r, "link", "add", "br-lan", "type", "bridge"]);
      sh(["ip", "-n", r, "link", "add", "lan1", "type", "veth", "peer", "name", "eth0", "netns", c]);
      sh(["ip", "-n", r, "link", "set", "lan1", "master", "br-lan", "up"]);
      sh(["ip", "-n", r, "addr", "add", `${VADDR.routerLan4}/24`, "dev", "br-lan"]);
      sh(["ip", "-n", r, "-6", "addr", "add", `${VADDR.routerLan6}/64`, "dev", "br-lan", "nodad"]);
      sh(["ip", "-n", r, "link", "set", "br-lan", "up"]);
      sh(["ip", "-n", c, "addr", "add", `${VADDR.client4}/24`, "dev", "eth0"]);
      sh(["ip", "-n", c, "-6", "addr", "add", `${VADDR.client6}/64`, "dev", "eth0", "nodad"]);
      sh(["ip", "-n", c, "link", "set", "eth0", "up"]);
      sh(["ip", "-n", c, "route", "add", "default", "via", VADDR.routerLan4]);
      sh(["ip", "-n", c, "-6", "route", "add", "default", "via", VADDR.routerLan6]);
      // WAN: veth to the ISP, the VLAN stack on both ends.
      sh(["ip", "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", i]);
      sh(["ip", "-n", r, "link", "set", "wan", "up"]);
      sh(["ip", "-n", i, "link", "set", "eth0", "up"]);
      let [rdev, idev] = ["wan", "eth0"];
      for (const v of this.vlans) {
        for (const [ns, lower] of [[r, rdev], [i, idev]] as const) {
          sh(["ip", "-n", ns, "link", "add", "link", lower, "name", `${lower}.${v.id}`, "type", "vlan", "proto", v.proto, "id", String(v.id)]);
          sh(["ip", "-n", ns, "link", "set", `${lower}.${v.id}`, "up"]);
        }
        [rdev, idev] = [`${rdev}.${v.id}`, `${idev}.${v.id}`];
      }
      // Frames as on a wire: full checksums, and VLAN tags inside the frame rather than in skb
      // metadata (a veth would pass the ISP's tag as metadata, which XDP on the router never sees).
      // GRO: veth needs it to receive XDP-redirected frames.
      sh(["ip", "netns", "exec", c, "ethtool", "-K", "eth0", "tx", "off", "gro", "on"]);
      sh(["ip", "netns", "exec", i, "ethtool", "-K", "eth0", "tx", "off", "gro", "on", "txvlan", "off", "tx-vlan-stag-hw-insert", "off"]);
      sh(["ip", "-n", i, "addr", "add", `${VADDR.server4}/32`, "dev", "lo"]);
      sh(["ip", "-n", i, "-6", "addr", "add", `${VADDR.server6}/128`, "dev", "lo", "nodad"]);
      sh(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
      await this.startPppoe(idev, rdev);
      this.nft((this.opts.ruleset ?? ((ppp: string) => natRuleset([ppp])))(this.ppp));
      return this;
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  private async startPppoe(ispDev: string, routerDev: string): Promise<void> {
    const opts = `${this.dir}/pppoe-server-options`;
    writeFileSync(opts, "noauth\nlcp-echo-interval 0\n+ipv6\n");
    // Not daemonized (-F): the lab owns the process and kills it in destroy().
    this.procs.push(this.spawn(this.isp, [
      "pppoe-server", "-F", "-k", "-I", ispDev, "-L", VADDR.isp4, "-R", VADDR.routerWan4, "-N", "4",
      "-o", String(PPPOE_SID - 1), "-O", opts, "-X", `${this.dir}/pppoe-server.pid`,
    ]));
    await Bun.sleep(300);
    // As OpenWrt's netifd starts it (ppp.sh): interface name, no default route of pppd's own.
    const ifname = this.opts.pppIfname === null ? [] : ["ifname", this.ppp];
    this.procs.push(this.spawn(this.router, [
      "pppd", "nodetach", "ipparam", "wan", ...ifname, "noauth", "lcp-echo-interval", "0", "+ipv6",
      "nodefaultroute", "noipdefault", "mtu", "1492", "mru", "1492", "plugin", "rp-pppoe.so", `nic-${routerDev}`,
    ]));
    const end = Date.now() + 30_000;
    while (!/inet /.test(this.exec(this.router, ["ip", "addr", "show", "dev", this.ppp], { allowFail: true }))) {
      if (Date.now() > end) throw new CommandError(`PPPoE session did not come up on ${routerDev}`);
      await Bun.sleep(200);
    }
    const links = JSON.parse(this.exec(this.isp, ["ip", "-j", "link", "show"])) as { ifname: string; link_type: string }[];
    this.ispPpp = links.find((l) => l.link_type === "ppp")?.ifname ?? "";
    if (!this.ispPpp) throw new CommandError("no PPP interface on the ISP side");
    // IPv6 over the session: IPV6CP gives link-local addresses only; a static global one stands in
    // for what DHCPv6 would assign.
    sh(["ip", "-n", this.router, "route", "add", "default", "dev", this.ppp]);
    sh(["ip", "-n", this.router, "-6", "addr", "add", `${VADDR.routerWan6}/128`, "dev", this.ppp, "nodad"]);
    sh(["ip", "-n", this.router, "-6", "route", "add", "default", "dev", this.ppp]);
    sh(["ip", "-n", this.isp, "-6", "route", "add", `${VADDR.routerWan6}/128`, "dev", this.ispPpp]);
  }

  nft(ruleset: string): void {
    loadRuleset(this.router, ruleset);
  }

  protected namespaces(): string[] {
    return [this.client, this.router, this.isp];
  }

  protected override cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
