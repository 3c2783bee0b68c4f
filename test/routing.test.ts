// The fast path must never be stale: when a route, a neighbour's MAC or a device changes, the
// offloaded flows follow at once, or go back to the kernel. The lab's service address is
// reachable through server (wan) or server2 (wan2); the tests move it between them.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { ADDR, type Lab } from "./lab.ts";
import { Offloader } from "./offloader.ts";
import { BUN, FIX, labFixture, type Servers, startUdpClient } from "./traffic.ts";

/**
 * A lab for one describe block, whose service address sits behind server (via wan) at the
 * start of every test; start() runs the offloader on it, stopped after the test.
 */
function routingLab() {
  const env = { lab: undefined as unknown as Lab, off: null as Offloader | null, start: async () => env.off! };
  // Both servers echo on the service address, so whichever the route points to answers.
  const serviceEchoes: Servers = (l) =>
    [l.server, l.server2].flatMap((ns) => ["7001", "7002"].map((port): [string, string[]] => [ns, [BUN, `${FIX}/udp-echo.ts`, port, ADDR.service4]]));
  labFixture({ secondWan: true }, [serviceEchoes], (l) => (env.lab = l));
  beforeEach(() => {
    const lab = env.lab;
    lab.exec(lab.server, ["ip", "addr", "replace", `${ADDR.service4}/32`, "dev", "lo"]);
    lab.exec(lab.router, ["ip", "link", "set", "lan", "up"]);
    lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server4, "dev", "wan"]);
  });
  afterEach(async () => {
    if (env.off) expect(await env.off.stop()).toBe(0);
    env.off = null;
  });
  env.start = async () => {
    env.off = new Offloader(env.lab, ["lan", "wan", "wan2", "--log-level", "debug"]);
    await env.off.waitFor(/running on/);
    return env.off;
  };
  return env;
}

describe("route, neighbour and link changes", () => {
  const env = routingLab();

  test("a route moved to another next hop: the offloaded flow follows it", async () => {
    const { lab } = env;
    const o = await env.start();
    const client = await startUdpClient(lab, o, ADDR.service4, 3000, 1000);
    const done = client.go();
    await Bun.sleep(1000);
    // From now on only server2 answers: packets still sent to server would be lost.
    lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server2_4, "dev", "wan2"]);
    lab.exec(lab.server, ["ip", "addr", "del", `${ADDR.service4}/32`, "dev", "lo"]);
    // The kernel first resolves server2's MAC: until then the flow is back on the kernel path.
    await o.waitFor(/(re-routed|offloaded) udp \S+ -> 10\.200\.9\.9:7001 .*lan -> wan2/);
    const res = await done;
    expect(res.received).toBeGreaterThan(res.sent - 100);
  }, 60_000);

  test("the next hop's MAC address changes: delivery follows", async () => {
    const { lab } = env;
    const o = await env.start();
    const client = await startUdpClient(lab, o, ADDR.service4, 3000, 1000);
    const done = client.go();
    await Bun.sleep(1000);
    // The server announces its new MAC (arp_notify); frames to the old one would be dropped.
    lab.exec(lab.server, ["ip", "link", "set", "eth0", "address", "02:00:00:00:99:99"]);
    await o.waitFor(/re-routed udp \S+ -> 10\.200\.9\.9:7001 .*lan -> wan/);
    const res = await done;
    expect(res.received).toBeGreaterThan(res.sent - 100);
  }, 60_000);

  test("a device going down hands its flows back to the kernel", async () => {
    const { lab } = env;
    const o = await env.start();
    const client = await startUdpClient(lab, o, ADDR.service4, 500, 1000);
    const done = client.go();
    // The LAN side: on the WAN side masquerade would flush the conntrack entry first.
    lab.exec(lab.router, ["ip", "link", "set", "lan", "down"]);
    await o.waitFor(/handed back udp \S+ -> 10\.200\.9\.9:7001 .*: device lan down/);
    lab.exec(lab.router, ["ip", "link", "set", "lan", "up"]);
    await done;
  }, 60_000);

});

// Alone in its lab: the tests above leave their marks on the neighbour tables.
describe("policy routing", () => {
  const env = routingLab();

  test("policy routing: flows with different marks take different paths", async () => {
    const { lab } = env;
    lab.nft(`table inet marks {
      chain pre { type filter hook prerouting priority mangle; udp dport 7002 ct mark set 0x10; meta mark set ct mark; }
    }`);
    lab.exec(lab.router, ["ip", "rule", "add", "fwmark", "0x10", "table", "100"]);
    lab.exec(lab.router, ["ip", "route", "add", `${ADDR.service4}/32`, "via", ADDR.server2_4, "dev", "wan2", "table", "100"]);
    try {
      const { lab } = env;
    const o = await env.start();
      const plain = await startUdpClient(lab, o, ADDR.service4, 200, 1000, 7001);
      const marked = await startUdpClient(lab, o, ADDR.service4, 200, 1000, 7002);
      expect(o.output).toMatch(/offloaded udp \S+ -> 10\.200\.9\.9:7001 .* lan -> wan\n/);
      expect(o.output).toMatch(/offloaded udp \S+ -> 10\.200\.9\.9:7002 .* lan -> wan2\n/);
      const [a, b] = await Promise.all([plain.go(), marked.go()]);
      // The first datagrams may wait in the kernel for a neighbour and be dropped (unres_qlen).
      expect(a.received).toBeGreaterThanOrEqual(a.sent - 5);
      expect(b.received).toBeGreaterThanOrEqual(b.sent - 5);
    } finally {
      lab.exec(lab.router, ["nft", "delete", "table", "inet", "marks"]);
      lab.exec(lab.router, ["ip", "rule", "del", "fwmark", "0x10", "table", "100"]);
    }
  }, 60_000);
});
