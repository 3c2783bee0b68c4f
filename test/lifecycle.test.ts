// How offloaded connections live and end: conntrack timeouts kept alive while the fast path
// carries a flow, idle flows and destroyed entries handed back to the kernel.
import { describe, expect, test } from "bun:test";
import { ADDR, type Lab } from "./lab.ts";
import { Offloader } from "./offloader.ts";
import { labFixture, startUdpClient, udpEcho } from "./traffic.ts";

describe("flow lifecycle", () => {
  let lab!: Lab;
  labFixture({}, [udpEcho], (l) => (lab = l));

  test("a live flow's conntrack entry outlives the kernel's timeout while the fast path carries it", async () => {
    // The kernel would expire this UDP entry after 3 s without packets; it sees none for 6 s.
    lab.exec(lab.router, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=3", "net.netfilter.nf_conntrack_udp_timeout=3"]);
    const off = new Offloader(lab, ["lan", "wan", "--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 1200, 200);
      const before = lab.forwardedPackets();
      const res = await client.go();
      expect(res.received).toBe(res.sent);
      expect(lab.forwardedPackets() - before).toBe(0);
      expect(off.output).not.toMatch(/handed back udp/);
      expect(lab.conntrack(["-p", "udp", "--dport", "7001"])).toMatch(/dport=7001/);
    } finally {
      expect(await off.stop()).toBe(0);
      lab.exec(lab.router, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout_stream=120", "net.netfilter.nf_conntrack_udp_timeout=30"]);
    }
  }, 60_000);

  test("an idle flow goes back to the kernel after --udp-timeout", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--udp-timeout", "1"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 100);
      await client.go();
      await off.waitFor(/handed back udp \S+ -> \S+:7001 after \d+\+\d+ packets: idle/, 5000);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("`conntrack -D` hands the flow back and its packets take the kernel path again", async () => {
    const off = new Offloader(lab, ["lan", "wan"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 3000, 1000);
      const done = client.go();
      await Bun.sleep(500);
      const before = lab.forwardedPackets();
      lab.exec(lab.router, ["conntrack", "-D", "-p", "udp", "--dport", "7001"]);
      await off.waitFor(/handed back udp \S+ -> \S+:7001 .*: conntrack entry destroyed/, 5000);
      const res = await done;
      // Echoes on their way back when the flow is handed back reach the router after conntrack
      // forgot their mapping and are lost, as on the kernel path alone: at most one of the
      // sender's bursts (10 datagrams every 10 ms). A stale or missing mapping would lose the rest.
      expect(res.received).toBeGreaterThanOrEqual(res.sent - 10);
      // The kernel saw packets again (a new conntrack entry) until the flow was offloaded anew.
      expect(lab.forwardedPackets() - before).toBeGreaterThan(0);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});
