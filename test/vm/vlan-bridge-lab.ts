// A router whose LAN is a VLAN-filtering bridge, as OpenWrt's DSA configurations build it (the host
// kernel lacks CONFIG_BRIDGE_VLAN_FILTERING, so this lab runs inside the test VM):
//
//   c1 (eth0 10.200.1.2)        -- lan1: VLAN 1 PVID untagged  \
//   c2 (eth0.10 10.200.10.2)    -- lan2: VLAN 10 tagged          > br-lan (vlan_filtering 1)  router  wan -- server (10.200.2.2)
//   c3 (eth0 10.200.10.3)       -- lan3: VLAN 10 PVID untagged  /
//
// The bridge itself is in VLAN 1 (PVID, untagged: 10.200.1.1 on br-lan) and VLAN 10 tagged, with
// the VLAN device br-lan.10 (10.200.10.1) on top. nftables masquerades on wan, drops ct state
// invalid and counts what its forward chain sees (table inet lab, as in test/lab.ts).
import { loadRuleset, natRuleset, sh } from "../lab.ts";
import { VmRouterLab } from "./router-lab.ts";

export const BADDR = {
  server4: "10.200.2.2",
  routerWan4: "10.200.2.1",
} as const;

export interface BridgeClient {
  name: string;
  /** The router's bridge port it sits behind. */
  port: string;
  addr: string;
  /** The tag frames carry on the port's wire: null for untagged. */
  tag: number | null;
}

export const BRIDGE_CLIENTS: readonly BridgeClient[] = [
  { name: "c1", port: "lan1", addr: "10.200.1.2", tag: null },
  { name: "c2", port: "lan2", addr: "10.200.10.2", tag: 10 },
  { name: "c3", port: "lan3", addr: "10.200.10.3", tag: null },
];

export class VlanBridgeLab extends VmRouterLab {
  private readonly id = `vmbr-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`;
  readonly router = `${this.id}-r`;
  readonly server = `${this.id}-s`;

  /** A client's namespace. */
  ns(c: BridgeClient): string {
    return `${this.id}-${c.name}`;
  }

  /** Builds the lab; on any failure removes what was built and rethrows. */
  create(): this {
    try {
      const r = this.router;
      for (const ns of this.namespaces()) {
        sh(["ip", "netns", "add", ns]);
        sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
      }
      sh(["ip", "-n", r, "link", "add", "br-lan", "type", "bridge", "vlan_filtering", "1"]);
      for (const c of BRIDGE_CLIENTS) {
        const ns = this.ns(c);
        sh(["ip", "-n", r, "link", "add", c.port, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        sh(["ip", "-n", r, "link", "set", c.port, "master", "br-lan", "up"]);
        // Frames as on a wire: full checksums, the VLAN tag inside the frame (a veth passes it as
        // metadata otherwise, which XDP on the router never sees). GRO: NAPI for XDP redirects.
        sh(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off", "txvlan", "off", "gro", "on"]);
        sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
        let dev = "eth0";
        if (c.tag !== null) {
          dev = `eth0.${c.tag}`;
          sh(["ip", "-n", ns, "link", "add", "link", "eth0", "name", dev, "type", "vlan", "id", String(c.tag)]);
          sh(["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        const gw = c.addr.startsWith("10.200.10.") ? "10.200.10.1" : "10.200.1.1";
        sh(["ip", "-n", ns, "addr", "add", `${c.addr}/24`, "dev", dev]);
        sh(["ip", "-n", ns, "route", "add", "default", "via", gw]);
      }
      // lan1 keeps the default (VLAN 1 PVID untagged); lan2 carries VLAN 10 tagged, lan3 untagged.
      for (const port of ["lan2", "lan3"]) sh(["bridge", "-n", r, "vlan", "del", "dev", port, "vid", "1"]);
      sh(["bridge", "-n", r, "vlan", "add", "dev", "lan2", "vid", "10"]);
      sh(["bridge", "-n", r, "vlan", "add", "dev", "lan3", "vid", "10", "pvid", "untagged"]);
      sh(["bridge", "-n", r, "vlan", "add", "dev", "br-lan", "vid", "10", "self"]);
      sh(["ip", "-n", r, "link", "add", "link", "br-lan", "name", "br-lan.10", "type", "vlan", "id", "10"]);
      sh(["ip", "-n", r, "addr", "add", "10.200.1.1/24", "dev", "br-lan"]);
      sh(["ip", "-n", r, "addr", "add", "10.200.10.1/24", "dev", "br-lan.10"]);
      for (const dev of ["br-lan", "br-lan.10"]) sh(["ip", "-n", r, "link", "set", dev, "up"]);
      sh(["ip", "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", "eth0", "netns", this.server]);
      sh(["ip", "-n", r, "addr", "add", `${BADDR.routerWan4}/24`, "dev", "wan"]);
      sh(["ip", "-n", r, "link", "set", "wan", "up"]);
      sh(["ip", "netns", "exec", this.server, "ethtool", "-K", "eth0", "tx", "off", "gro", "on"]);
      sh(["ip", "-n", this.server, "addr", "add", `${BADDR.server4}/24`, "dev", "eth0"]);
      sh(["ip", "-n", this.server, "link", "set", "eth0", "up"]);
      sh(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      loadRuleset(r, natRuleset(["wan"]));
      return this;
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  protected namespaces(): string[] {
    return [this.router, this.server, ...BRIDGE_CLIENTS.map((c) => this.ns(c))];
  }
}
