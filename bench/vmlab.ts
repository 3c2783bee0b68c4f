// One router lab per configuration of the VM benchmark (bench/vm-inside.ts, inside the test VM):
// the kernel path, the kernel's software flowtable (nftables `flow add`, what OpenWrt calls
// software flow offloading), and the offloader with XDP or TC. Two topologies:
//
//   ethernet: client -- lan | router | wan -- server               (test/lab.ts)
//   pppoe:    client -- lan1 | br-lan router pppoe-wan > wan.7 > wan | -- isp  (test/vm/pppoe-lab.ts)
//
// Every lab has the same nftables ruleset (masquerade on the WAN device, the forward chain's
// counter after the offload statement: it counts what the kernel path still forwards); the
// flowtable lab adds the flowtable on the lowest devices (as OpenWrt's fw4 lists them) and
// `flow add` for TCP and UDP. The far end counts and drops what arrives at XDP (bench/sink.bpf.c)
// while packets/s are measured; for TCP the sink makes way for an XDP_PASS program.
import { ADDR, Lab, loadRuleset, nftCounter, sh } from "../test/lab.ts";
import { Daemon } from "../test/vm/daemon.ts";
import { PppoeLab, VADDR } from "../test/vm/pppoe-lab.ts";
import { DISCARD_PORT, PASS_OBJ, runPktgen, type Sent, SINK_OBJ, sinkCount, sinkMapOf } from "./benchlab.ts";

export const VM_CONFIGS = ["kernel", "flowtable", "xdp-native", "tc"] as const;
export type VmConfig = (typeof VM_CONFIGS)[number];
export const VM_TOPOLOGIES = ["ethernet", "pppoe"] as const;
export type VmTopology = (typeof VM_TOPOLOGIES)[number];

/** Endpoint veths for TCP: MTU-sized frames as on a wire (no TSO/GSO/GRO; XDP_PASS gives them NAPI). */
const WIRE = ["tx", "off", "tso", "off", "gso", "off", "gro", "off"];

interface Shape {
  /** Router devices the offloader is named (upper devices; it finds the lowest). */
  offloadDevs: string[];
  /** The router's L3 device on the LAN side (the generator's frames go to its MAC). */
  lanDev: string;
  serverAddr: string;
}

/** The labs' ruleset; with flowtable devices (the lowest ones, as fw4 lists them) also the flowtable. */
function labRuleset(natOif: string, flowtableDevs: string[] | null): string {
  const ft = flowtableDevs
    ? `  flowtable ft {
    hook ingress priority filter
    devices = { ${flowtableDevs.join(", ")} }
  }
`
    : "";
  return `
table inet lab {
  counter forwarded {}
  counter invalid {}
${ft}  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state invalid counter name "invalid" drop
${flowtableDevs ? "    meta l4proto { tcp, udp } flow add @ft\n" : ""}    counter name "forwarded"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${natOif}" masquerade
  }
}
`;
}

export class VmBenchLab {
  private eth: Lab | null = null;
  private pppoe: PppoeLab | null = null;
  private daemon: Daemon | null = null;
  private sinkMap = 0;
  private lanMac = "";
  private shape!: Shape;
  client = "";
  router = "";
  server = "";

  constructor(readonly topology: VmTopology, readonly config: VmConfig) {}

  async create(): Promise<this> {
    const ft = this.config === "flowtable";
    if (this.topology === "ethernet") {
      this.shape = { offloadDevs: ["lan", "wan"], lanDev: "lan", serverAddr: ADDR.server4 };
      const lab = (this.eth = new Lab({ prefix: "eovmb" }).create());
      [this.client, this.router, this.server] = [lab.client, lab.router, lab.server];
      loadRuleset(this.router, `flush ruleset\n${labRuleset("wan", ft ? ["lan", "wan"] : null)}`);
    } else {
      const lab = new PppoeLab({ ruleset: (ppp) => labRuleset(ppp, ft ? ["lan1", "wan"] : null) });
      this.pppoe = lab;
      await lab.create();
      this.shape = { offloadDevs: ["br-lan", lab.ppp], lanDev: "br-lan", serverAddr: VADDR.server4 };
      [this.client, this.router, this.server] = [lab.client, lab.router, lab.isp];
    }
    this.lanMac = this.link(this.router, this.shape.lanDev).address;
    const server = this.link(this.server, "eth0");
    if (this.topology === "ethernet") {
      // The sink drops ARP too.
      this.exec(this.router, ["ip", "neigh", "replace", ADDR.server4, "lladdr", server.address, "dev", "wan", "nud", "permanent"]);
    }
    // A station that has spoken ARP, as real ones do (the generator's raw frames never ask): the
    // flowtable needs the neighbour to resolve the bridge port of the reply direction.
    const client = this.link(this.client, "eth0");
    this.exec(this.router, ["ip", "neigh", "replace", ADDR.client4, "lladdr", client.address, "dev", this.shape.lanDev, "nud", "permanent"]);
    this.setXdp(this.server, SINK_OBJ);
    this.sinkMap = sinkMapOf((cmd) => this.exec(this.server, cmd), "eth0");
    if (this.config === "xdp-native" || this.config === "tc") {
      this.daemon = new Daemon(this.router, [...this.shape.offloadDevs, "--hook", this.config, "--log-level", "debug"]);
      await this.daemon.waitFor(/running on/);
    }
    return this;
  }

  exec(ns: string, cmd: string[]): string {
    return sh(["ip", "netns", "exec", ns, ...cmd]);
  }

  private link(ns: string, dev: string): { address: string } {
    const [l] = JSON.parse(this.exec(ns, ["ip", "-j", "link", "show", "dev", dev])) as { address: string }[];
    if (!l) throw new Error(`${ns}: no ${dev}`);
    return l;
  }

  private setXdp(ns: string, obj: string): void {
    this.exec(ns, ["ip", "link", "set", "dev", "eth0", "xdpdrv", "off"]);
    this.exec(ns, ["ip", "link", "set", "dev", "eth0", "xdpdrv", "obj", obj, "sec", "xdp"]);
  }

  /** From packets/s to TCP: the endpoints send and receive MTU-sized frames, nothing is sunk. */
  wireEndpoints(): void {
    for (const ns of [this.client, this.server]) {
      this.exec(ns, ["ethtool", "-K", "eth0", ...WIRE]);
      this.setXdp(ns, PASS_OBJ);
    }
    this.sinkMap = 0;
  }

  get serverAddr(): string {
    return this.shape.serverAddr;
  }

  sinkCount(): number {
    if (!this.sinkMap) throw new Error(`${this.config}: no sink any more`);
    return sinkCount(this.sinkMap);
  }

  forwardChainCount(): number {
    return nftCounter(this.router, "forwarded");
  }

  invalidCount(): number {
    return nftCounter(this.router, "invalid");
  }

  /** 64-byte UDP frames from the client for `seconds`, the generator pinned to CPU 1. */
  async send(flows: number, seconds: number): Promise<Sent> {
    const args = [this.lanMac, ADDR.client4, this.shape.serverAddr, DISCARD_PORT, String(flows), String(seconds), "0"];
    return await runPktgen(this.client, args, seconds * 1000 + 30_000).result;
  }

  /** How many of the generator's flows (source ports) are offloaded: by the daemon's log, or conntrack's [OFFLOAD] mark. */
  offloadedFlows(): number {
    if (this.daemon) {
      const re = new RegExp(`offloaded udp ${ADDR.client4.replaceAll(".", "\\.")}:(\\d+) -> \\S+:${DISCARD_PORT} `, "g");
      return new Set([...this.daemon.output.matchAll(re)].map((m) => m[1])).size;
    }
    if (this.config !== "flowtable") return 0;
    const ct = sh(["ip", "netns", "exec", this.router, "conntrack", "-L", "-p", "udp", "--dport", DISCARD_PORT], { allowFail: true });
    return ct.split("\n").filter((l) => l.includes("[OFFLOAD]")).length;
  }

  get offloads(): boolean {
    return this.config !== "kernel";
  }

  get daemonLog(): string {
    return this.daemon?.output ?? "";
  }

  /** Stops the daemon (its exit code, or null without one) and removes the lab. */
  async destroy(): Promise<number | null> {
    let code: number | null = null;
    try {
      if (this.daemon) code = await Promise.race([this.daemon.stop(), Bun.sleep(20_000).then(() => -1)]);
    } finally {
      this.eth?.destroy();
      this.pppoe?.destroy();
    }
    return code;
  }
}
