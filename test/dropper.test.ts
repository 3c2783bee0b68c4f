// The dropper end to end: a WAN host floods the NAT router with packets its firewall or its
// routing table drops; after the first drops the router's XDP program drops them instead, and
// nothing the kernel would accept is ever dropped.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { attachedTo } from "./fixtures/faults.ts";
import { ADDR, type Lab, sh } from "./lab.ts";
import { BIN, Offloader, StateDirs } from "./offloader.ts";
import { BUN, labFixture, startUdpClient, udpEcho } from "./traffic.ts";

const SPORT = 41000;
/** Frames of a flood a veth may deliver outside its XDP program. */
const VETH_SLIP = 5;

// Beside the lab's own table: the admin's filter rules for traffic from the WAN.
const rules = (port9999: "drop" | "accept") => `
table inet droptest {
  counter closed {}
  counter open {}
  counter reopened {}
  counter limited {}
  counter input_closed {}
  counter syn_closed {}
  chain forward {
    type filter hook forward priority filter - 1; policy accept;
    iifname "wan" udp dport 9997 counter name "open" accept
    iifname "wan" udp dport 9999 ${port9999 === "drop" ? 'counter name "closed" drop' : 'counter name "reopened" accept'}
    iifname "wan" udp dport 9995 limit rate 1/second burst 1 packets counter name "limited" accept
    iifname "wan" udp dport 9995 drop
    iifname "wan" tcp dport 9996 counter name "syn_closed" drop
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "wan" udp dport 9998 counter name "input_closed" drop
  }
}
`;

function loadRules(lab: Lab, port9999: "drop" | "accept"): void {
  const r = Bun.spawnSync(["ip", "netns", "exec", lab.router, "nft", "-f", "-"], {
    stdin: new TextEncoder().encode(`table inet droptest {}\ndelete table inet droptest\n${rules(port9999)}`),
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`nft: ${r.stderr.toString().trim()}`);
}

const counter = (lab: Lab, name: string) => {
  const out = JSON.parse(sh(["ip", "netns", "exec", lab.router, "nft", "-j", "list", "counter", "inet", "droptest", name])) as {
    nftables: { counter?: { packets: number } }[];
  };
  return out.nftables.find((o) => o.counter)?.counter?.packets ?? NaN;
};

/** UDP datagrams from the server (the WAN side, or `from`) to host:port, all from one source port. */
function send(lab: Lab, host: string, port: number, count: number, gapMs = 2, from = lab.server): void {
  const script = `
    const s = require("node:dgram").createSocket("${host.includes(":") ? "udp6" : "udp4"}");
    s.bind(${SPORT}, async () => {
      for (let i = 0; i < ${count}; i++) {
        s.send(Buffer.alloc(18), ${port}, "${host}");
        await Bun.sleep(${gapMs});
      }
      await Bun.sleep(50);
      s.close();
    });`;
  lab.exec(from, [BUN, "-e", script]);
}

/** `status --json` in the router's namespace (where the interface names are). */
function status(lab: Lab, off: Offloader): { interfaces: Record<string, { dropPackets: number }>; dropper: { mode: string; entries: { blackhole: number } } } {
  return JSON.parse(lab.exec(lab.router, [BIN, "status", "--json", "--run-dir", off.dirs.runDir]));
}

/** Packets the datapath dropped on the device. */
const xdpDrops = (lab: Lab, off: Offloader, dev: string) => status(lab, off).interfaces[dev]?.dropPackets ?? NaN;

/** Packets the LAN client received. */
function clientRx(lab: Lab): number {
  const [link] = JSON.parse(lab.exec(lab.client, ["ip", "-j", "-s", "link", "show", "eth0"])) as { stats64: { rx: { packets: number } } }[];
  return link?.stats64.rx.packets ?? NaN;
}

/** A counter once the packets still on their way through the router have been counted. */
async function settled(lab: Lab, name: string): Promise<number> {
  for (let last = counter(lab, name); ; ) {
    await Bun.sleep(200);
    const now = counter(lab, name);
    if (now === last) return now;
    last = now;
  }
}

/**
 * Waits until the router's network has settled: a new lab's devices get their IPv6 link-local
 * addresses and routes a moment after they come up, and every such change flushes learnt entries.
 */
async function settledNetwork(lab: Lab): Promise<void> {
  const busy = () => lab.exec(lab.router, ["ip", "-6", "addr", "show", "tentative"]).trim() !== "" ||
    /state (DOWN|LOWERLAYERDOWN)/.test(lab.exec(lab.router, ["ip", "link", "show", "up"]));
  while (busy()) await Bun.sleep(100);
}

const setup = (lab: Lab) => {
  // The WAN host reaches the LAN and the test prefixes through the router.
  for (const net of ["10.200.1.0/24", "10.200.77.0/24", "10.200.78.0/24"]) lab.exec(lab.server, ["ip", "route", "add", net, "via", ADDR.routerWan4]);
  for (const net of ["fd00:1::/64", "fd00:77::/64"]) lab.exec(lab.server, ["ip", "-6", "route", "add", net, "via", ADDR.routerWan6]);
  lab.exec(lab.router, ["ip", "route", "add", "blackhole", "10.200.77.0/24"]);
  lab.exec(lab.router, ["ip", "-6", "route", "add", "blackhole", "fd00:77::/64"]);
  lab.exec(lab.router, ["ip", "route", "add", "unreachable", "10.200.78.0/24"]);
  loadRules(lab, "drop");
};

describe("learnt netfilter drops (--drop learn)", () => {
  let lab!: Lab;
  labFixture({ prefix: "eod" }, [], (l) => (lab = l), setup);

  test("a flood of a closed port: the forward chain stops counting, XDP drops, an open port is untouched, a rule change applies to the next packet", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "learn", "--drop-timeout", "60"]);
    try {
      await off.waitFor(/running on/);
      await off.waitFor(/dropper on: blackhole routes and netfilter drops/);
      send(lab, ADDR.client4, 9999, 5);
      await off.waitFor(/dropping at XDP: udp 10\.200\.2\.2:41000 -> 10\.200\.1\.2:9999 on wan \(netfilter verdict\)/);
      const closed = await settled(lab, "closed");
      const drops = xdpDrops(lab, off, "wan");
      send(lab, ADDR.client4, 9999, 300);
      // The ruleset saw (almost) none of them: XDP dropped them. A veth hands the odd frame to the
      // stack outside its XDP program (the forwarding tests see the same); that one meets the rule.
      const slipped = await settled(lab, "closed") - closed;
      expect(slipped).toBeLessThanOrEqual(VETH_SLIP);
      expect(xdpDrops(lab, off, "wan") - drops).toBeGreaterThanOrEqual(300 - VETH_SLIP);

      // The same source to an open port: accepted (then offloaded), every packet reaches the client.
      const dropsBefore = xdpDrops(lab, off, "wan");
      const rx = clientRx(lab);
      send(lab, ADDR.client4, 9997, 100);
      expect(counter(lab, "open")).toBeGreaterThanOrEqual(1);
      expect(xdpDrops(lab, off, "wan")).toBe(dropsBefore);
      expect(clientRx(lab) - rx).toBeGreaterThanOrEqual(100);
      expect(off.output).not.toMatch(/dropping at XDP: .*:9997/);

      // The admin opens the port: the drop entries go with the ruleset generation, and the very
      // next packet is the kernel's to judge.
      loadRules(lab, "accept");
      await off.waitFor(/removed 1 drop entry: the nftables ruleset changed/);
      send(lab, ADDR.client4, 9999, 1);
      expect(counter(lab, "reopened")).toBe(1);
    } finally {
      expect(await off.stop()).toBe(0);
      loadRules(lab, "drop");
    }
  }, 60_000);

  test("a TCP SYN to a closed port: its retransmissions are dropped at XDP", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "learn"]);
    try {
      await off.waitFor(/dropper on/);
      // The kernel retransmits the SYN from the same port after 1 s and 3 s (initial RTO 1 s).
      const connecting = Bun.spawn(["ip", "netns", "exec", lab.server, BUN, "-e", `
        const c = require("node:net").connect({ host: "${ADDR.client4}", port: 9996, localPort: ${SPORT + 2} });
        c.on("error", () => {});
        setTimeout(() => { c.destroy(); process.exit(0); }, 3500);`]);
      await off.waitFor(/dropping at XDP: tcp 10\.200\.2\.2:41002 -> 10\.200\.1\.2:9996 on wan \(netfilter verdict\)/);
      const seen = counter(lab, "syn_closed");
      const drops = xdpDrops(lab, off, "wan");
      await connecting.exited;
      expect(counter(lab, "syn_closed")).toBe(seen);
      expect(xdpDrops(lab, off, "wan") - drops).toBeGreaterThanOrEqual(1);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("the input chain's drops too", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "learn"]);
    try {
      await off.waitFor(/dropper on/);
      send(lab, ADDR.routerWan4, 9998, 5);
      await off.waitFor(/dropping at XDP: udp 10\.200\.2\.2:41000 -> 10\.200\.2\.1:9998 on wan \(netfilter verdict\)/);
      const seen = await settled(lab, "input_closed");
      send(lab, ADDR.routerWan4, 9998, 200);
      expect(await settled(lab, "input_closed") - seen).toBeLessThanOrEqual(VETH_SLIP);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("IPv6: a flood of a closed port is learnt and dropped at XDP, the forward chain stops counting", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "learn", "--drop-timeout", "60"]);
    try {
      await off.waitFor(/dropper on: blackhole routes and netfilter drops/);
      send(lab, ADDR.client6, 9999, 5);
      await off.waitFor(/dropping at XDP: udp \[fd00:2::2\]:41000 -> \[fd00:1::2\]:9999 on wan \(netfilter verdict\)/);
      const closed = await settled(lab, "closed");
      const drops = xdpDrops(lab, off, "wan");
      send(lab, ADDR.client6, 9999, 300);
      expect(await settled(lab, "closed") - closed).toBeLessThanOrEqual(VETH_SLIP);
      expect(xdpDrops(lab, off, "wan") - drops).toBeGreaterThanOrEqual(300 - VETH_SLIP);
      const flows = lab.exec(lab.router, [BIN, "flows", "--state", "dropped", "--run-dir", off.dirs.runDir]);
      expect(flows).toMatch(/^udp +\[DROP\] \[fd00:2::2\]:41000 -> \[fd00:1::2\]:9999 on wan packets=\d+/);
      expect(flows.trim().split("\n")).toHaveLength(1);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("a rate-limited rule: a learnt drop outlives the limit's refill for at most 4 drop timeouts, then the kernel judges again", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "learn", "--drop-timeout", "1"]);
    try {
      await off.waitFor(/dropper on/);
      // One packet from another port takes the limit's only token; the flow's first packet right
      // after it is dropped (and learnt), then it sends 50 packets a second for 8 s. The limit
      // would accept one a second; XDP drops them all until the entry's maximum age (4 s).
      const sending = Bun.spawn(["ip", "netns", "exec", lab.server, BUN, "-e", `
        const dgram = require("node:dgram");
        const other = dgram.createSocket("udp4");
        const s = dgram.createSocket("udp4");
        other.bind(${SPORT + 1}, () => other.send(Buffer.alloc(18), 9995, "${ADDR.client4}", () => s.bind(${SPORT}, async () => {
          for (let i = 0; i < 400; i++) { s.send(Buffer.alloc(18), 9995, "${ADDR.client4}"); await Bun.sleep(20); }
          s.close(); other.close();
        })));`]);
      await off.waitFor(/dropping at XDP: udp 10\.200\.2\.2:41000 -> 10\.200\.1\.2:9995/);
      const learnt = performance.now();
      const accepted = counter(lab, "limited");
      await off.waitFor(/no longer dropping at XDP: udp 10\.200\.2\.2:41000 -> 10\.200\.1\.2:9995/, 15_000);
      // Removed while still hit: by age, not idleness (one sweep of slack).
      expect(performance.now() - learnt).toBeGreaterThanOrEqual(3_000);
      await sending.exited;
      // Back with the kernel, the limit accepted the flow again.
      expect(counter(lab, "limited")).toBeGreaterThan(accepted);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});

describe("blackhole routes (the default --drop blackhole)", () => {
  let lab!: Lab;
  labFixture({ prefix: "eod" }, [udpEcho], (l) => (lab = l), setup);

  test("a blackholed prefix is dropped at XDP; an unreachable one stays with the kernel (ICMP); netfilter drops are not learnt", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"]);
    try {
      await off.waitFor(/dropper on: blackhole routes,/);
      send(lab, "10.200.77.1", 5000, 5);
      await off.waitFor(/dropping at XDP: udp 10\.200\.2\.2:41000 -> 10\.200\.77\.1:5000 on wan \(blackhole route\)/);
      const drops = xdpDrops(lab, off, "wan");
      send(lab, "10.200.77.1", 5000, 200);
      expect(xdpDrops(lab, off, "wan") - drops).toBeGreaterThanOrEqual(200 - VETH_SLIP);
      // `flows` lists the entry with its counter; `status` the dropper (its file is rewritten each second).
      const flows = lab.exec(lab.router, [BIN, "flows", "--run-dir", off.dirs.runDir]);
      expect(Number(/^udp +\[DROP\] 10\.200\.2\.2:41000 -> 10\.200\.77\.1:5000 on wan packets=(\d+)/m.exec(flows)?.[1])).toBeGreaterThanOrEqual(200 - VETH_SLIP);
      const statusLine = () => /^dropper: blackhole, 1 blackhole and 0 learnt drop entries, (\d+) packets dropped at XDP/m.exec(lab.exec(lab.router, [BIN, "status", "--run-dir", off.dirs.runDir]));
      while (Number(statusLine()?.[1] ?? 0) < 200 - VETH_SLIP) await Bun.sleep(100);

      send(lab, "10.200.78.1", 5000, 50);
      send(lab, ADDR.client4, 9999, 50);
      const unreachable = lab.exec(lab.router, ["nstat", "-az", "IcmpOutDestUnreachs"]);
      expect(Number(/IcmpOutDestUnreachs\s+(\d+)/.exec(unreachable)?.[1] ?? 0)).toBeGreaterThan(0);
      expect(off.output).not.toMatch(/dropping at XDP: .*10\.200\.78\.1/);
      expect(off.output).not.toMatch(/dropping at XDP: .*:9999/);

      // A route change flushes: the kernel routes the next packet again.
      lab.exec(lab.router, ["ip", "route", "del", "blackhole", "10.200.77.0/24"]);
      await off.waitFor(/removed 1 drop entry: the route lookup no longer drops their packets/);
      lab.exec(lab.router, ["ip", "route", "add", "blackhole", "10.200.77.0/24"]);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("IPv6: a blackholed prefix is dropped at XDP; `flows --state dropped` lists the entry, not the connection offloaded beside it", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"]);
    try {
      await off.waitFor(/dropper on: blackhole routes,/);
      const client = await startUdpClient(lab, off, ADDR.server4, 100);
      send(lab, "fd00:77::1", 5000, 5);
      await off.waitFor(/dropping at XDP: udp \[fd00:2::2\]:41000 -> \[fd00:77::1\]:5000 on wan \(blackhole route\)/);
      const drops = xdpDrops(lab, off, "wan");
      send(lab, "fd00:77::1", 5000, 200);
      expect(xdpDrops(lab, off, "wan") - drops).toBeGreaterThanOrEqual(200 - VETH_SLIP);

      const flows = (...args: string[]) => lab.exec(lab.router, [BIN, "flows", ...args, "--run-dir", off.dirs.runDir]).split("\n").filter(Boolean);
      const drop = /^udp +\[DROP\] \[fd00:2::2\]:41000 -> \[fd00:77::1\]:5000 on wan packets=(\d+)/;
      const conn = /^udp +orig 10\.200\.1\.2:\d+ -> 10\.200\.2\.2:7001 /;
      expect(flows()).toHaveLength(2);
      const dropped = flows("--state", "dropped");
      expect(dropped).toHaveLength(1);
      expect(Number(drop.exec(dropped[0] ?? "")?.[1])).toBeGreaterThanOrEqual(200 - VETH_SLIP);
      const offloaded = flows("--state", "offloaded");
      expect(offloaded).toHaveLength(1);
      expect(offloaded[0]).toMatch(conn);
      expect(flows("--state", "closing")).toEqual([]);
      const json = JSON.parse(flows("--state", "dropped", "--json").join("\n")) as { family: number; dirs: unknown[] }[];
      expect(json.map((r) => [r.family, r.dirs.length])).toEqual([[10, 1]]);

      const res = await client.go();
      expect(res.received).toBe(res.sent);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("--drop off: no tracepoint, no drop entries", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native", "--drop", "off"]);
    try {
      await off.waitFor(/running on/);
      send(lab, "10.200.77.1", 5000, 50);
      expect(status(lab, off).dropper).toMatchObject({ mode: "off", entries: { blackhole: 0 } });
      expect(off.output).not.toMatch(/dropper on|dropping at XDP/);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});


describe("behind a bridge: the entry is keyed by the bridge port the sender is on", () => {
  let lab!: Lab;
  labFixture({ prefix: "eod", bridgeLan: true }, [], (l) => (lab = l), (l) => l.exec(l.router, ["ip", "route", "add", "blackhole", "10.200.77.0/24"]));

  test("a LAN client's flood into a blackhole is dropped on lan1 (found through the FDB)", async () => {
    await settledNetwork(lab);
    const off = new Offloader(lab, ["br-lan", "wan", "--hook", "xdp-native"]);
    try {
      await off.waitFor(/dropper on/);
      send(lab, "10.200.77.1", 5000, 5, 2, lab.client);
      await off.waitFor(/dropping at XDP: udp 10\.200\.1\.2:41000 -> 10\.200\.77\.1:5000 on lan1 \(blackhole route\)/);
      const drops = xdpDrops(lab, off, "lan1");
      send(lab, "10.200.77.1", 5000, 200, 2, lab.client);
      expect(xdpDrops(lab, off, "lan1") - drops).toBeGreaterThanOrEqual(200 - VETH_SLIP);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});

/**
 * Runs the daemon with the kernel's BTF out of its sight, as on a kernel built without
 * CONFIG_DEBUG_INFO_BTF: an empty tmpfs over /sys/kernel/btf in a mount namespace of its own,
 * which goes when the daemon exits.
 */
const WITHOUT_BTF = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs no-btf /sys/kernel/btf && exec "$0" "$@"'];

describe("a kernel without BTF: the dropper is off, the forwarder works", () => {
  let lab!: Lab;
  labFixture({ prefix: "eod" }, [udpEcho], (l) => (lab = l));

  test("one warning line, a UDP flow offloaded both ways, nothing left afterwards", async () => {
    const dirs = new StateDirs();
    try {
      const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"], dirs, { wrap: WITHOUT_BTF });
      try {
        await off.waitFor(/running on lan, wan/);
        const client = await startUdpClient(lab, off, ADDR.server4, 2000);
        const before = lab.forwardedPackets();
        const res = await client.go();
        expect(res.received).toBe(res.sent);
        expect(lab.forwardedPackets() - before).toBe(0);
        expect(status(lab, off).dropper).toMatchObject({ mode: "off", entries: { blackhole: 0 } });
      } finally {
        expect(await off.stop()).toBe(0);
      }
      expect(off.output.split("\n").filter((l) => /^(warn|error):/.test(l))).toEqual([
        "warn: dropper off (the kernel has no BTF: no /sys/kernel/btf/vmlinux, it was built without CONFIG_DEBUG_INFO_BTF): " +
          "packets the kernel drops are not dropped at XDP; offloading works as usual",
      ]);
      expect(off.output).not.toMatch(/dropper on/);
      expect(["lan", "wan"].flatMap((d) => attachedTo(lab, d))).toEqual([]);
      expect(existsSync(dirs.pinPath) ? readdirSync(dirs.pinPath) : []).toEqual([]);
      expect(existsSync(`${dirs.runDir}/status.json`)).toBe(false);
      // The tmpfs went with the daemon's mount namespace.
      expect(lab.exec(lab.router, ["ls", "/sys/kernel/btf"])).toContain("vmlinux");
    } finally {
      dirs.remove();
    }
  }, 60_000);
});
