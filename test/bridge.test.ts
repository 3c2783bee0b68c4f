// An OpenWrt-style LAN: the router's LAN addresses sit on a bridge with several ports. The
// offloader attaches to the ports (naming the bridge, or nothing at all), resolves the egress
// to the right port through the bridge's FDB, and the bridge itself no longer sees the flow.
import { describe, expect, test } from "bun:test";
import { ADDR, type Lab } from "./lab.ts";
import { BIN, Offloader } from "./offloader.ts";
import { labFixture, startTcpClient, startUdpClient, tcpSink, udpEcho } from "./traffic.ts";

describe("a bridged LAN", () => {
  let lab!: Lab;
  labFixture({ bridgeLan: true }, [tcpSink], (l) => (lab = l));

  test("naming the bridge attaches to its ports; flows bypass the bridge and the forward chain", async () => {
    const off = new Offloader(lab, ["br-lan", "wan", "--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      expect(off.output).toMatch(/attached to lan1 /);
      expect(off.output).toMatch(/attached to lan2 /);
      expect(off.output).not.toMatch(/attached to br-lan/);
      const client = await startTcpClient(lab, off, ADDR.server4, 32, "lan1");
      const bridgeBefore = lab.rxPackets("br-lan");
      const fwdBefore = lab.forwardedPackets();
      const res = await client.go();
      expect(res.reply.sha256).toBe(res.sent);
      // The reply direction left by the port the client sits behind (the FDB said so).
      expect(off.output).toMatch(/offloaded tcp 10\.200\.2\.2:5201 -> \S+ \(dnat 10\.200\.1\.2:\d+\) wan -> lan1\n/);
      const m = await off.waitFor(/handed back tcp \S+ -> \S+:5201 after (\d+)\+\d+ packets: FIN\/RST/);
      expect(Number(m[1])).toBeGreaterThan(20_000);
      expect(lab.forwardedPackets() - fwdBefore).toBeLessThan(100);
      expect(lab.rxPackets("br-lan") - bridgeBefore).toBeLessThan(100);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("--dry-run says which devices it would attach to, how and why, and attaches nothing", () => {
    const out = lab.exec(lab.router, [BIN, "run", "br-lan", "wan", "--dry-run"]);
    expect(out).toBe([
      "lan1: attach xdp-native (every device has native XDP); found as br-lan > lan1",
      "lan2: attach xdp-native (every device has native XDP); found as br-lan > lan2",
      "wan: attach xdp-native (every device has native XDP); found as wan",
      "",
    ].join("\n"));
    expect(lab.exec(lab.router, ["ip", "-d", "link", "show"])).not.toMatch(/xdp/);
  });

  test("with no interface named it attaches to the lowest devices of every routed interface", async () => {
    const off = new Offloader(lab, ["--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      for (const dev of ["lan1", "lan2", "wan"]) expect(off.output).toMatch(new RegExp(`attached to ${dev} `));
      expect(off.output).not.toMatch(/attached to (br-lan|lo) /);
      const client = await startTcpClient(lab, off, ADDR.server4, 8, "lan1");
      const res = await client.go();
      expect(res.reply.sha256).toBe(res.sent);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});

describe("a station moving to another bridge port", () => {
  let lab!: Lab;
  labFixture({ bridgeLan: true }, [udpEcho], (l) => (lab = l));

  test("the reply direction follows the station to its new port", async () => {
    const off = new Offloader(lab, ["br-lan", "wan", "--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 500, 1000, 7001, "lan1");
      // The bridge now believes the client's MAC sits behind lan2 (as after a Wi-Fi roam).
      const mac = (JSON.parse(lab.exec(lab.client, ["ip", "-j", "link", "show", "eth0"])) as { address: string }[])[0]!.address;
      lab.exec(lab.router, ["bridge", "fdb", "replace", mac, "dev", "lan2", "master", "static"]);
      await off.waitFor(/re-routed udp 10\.200\.2\.2:7001 -> \S+ \(dnat 10\.200\.1\.2:\d+\) wan -> lan2\n/);
      // The bridge may have dropped the entry already (the station spoke from lan1 again).
      lab.exec(lab.router, ["bridge", "fdb", "del", mac, "dev", "lan2", "master"], { allowFail: true });
      await client.go();
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});
