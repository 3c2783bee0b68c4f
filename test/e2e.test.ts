// End to end through a real NAT router in network namespaces: the offloader must carry
// established connections past the router's forward chain, with the same result as the kernel.
import { describe, expect, test } from "bun:test";
import { ADDR, type Lab } from "./lab.ts";
import { Offloader, StateDirs } from "./offloader.ts";
import { BUN, FIX, labFixture, startTcpClient, startUdpClient, tcpSink, udpEcho } from "./traffic.ts";

describe.each(["xdp-native", "xdp-generic", "tc"])("through a NAT router with --hook %s", (hook) => {
  let lab!: Lab;
  labFixture({}, [tcpSink, udpEcho], (l) => (lab = l));

  for (const family of [4, 6] as const) {
    test(`TCP over IPv${family}: offloaded, intact, NATed, handed back on FIN`, async () => {
      const host = family === 4 ? ADDR.server4 : ADDR.server6;
      const routerWan = family === 4 ? ADDR.routerWan4 : ADDR.routerWan6;
      const off = new Offloader(lab, ["lan", "wan", "--hook", hook, "--log-level", "debug"]);
      try {
        await off.waitFor(/running on/);
        const client = await startTcpClient(lab, off, host, 48);
        const before = lab.forwardedPackets();
        const res = await client.go();
        expect(res.reply.sha256).toBe(res.sent);
        expect(res.reply.bytes).toBe(48 * 1024 * 1024 + 1024);
        expect(res.reply.peer.replace(/^::ffff:/, "")).toBe(routerWan);
        const m = await off.waitFor(/handed back tcp \S+ -> \S+:5201 after (\d+)\+(\d+) packets: FIN\/RST/, 5000);
        // 48 MiB is over 30,000 segments: nearly all of them must have bypassed the forward chain,
        // which sees only the FIN exchange after the hand-back and the server's ACKs for the last
        // data (the FIN rides behind it and puts the connection back on the kernel path first).
        expect(Number(m[1])).toBeGreaterThan(30_000);
        expect(Number(m[2])).toBeGreaterThan(100); // ACKs: the server acknowledges GRO-merged bursts
        expect(lab.forwardedPackets() - before).toBeLessThan(100);
        expect(lab.invalidPackets()).toBe(0);
        // Conntrack saw the close: the entry left ESTABLISHED.
        await Bun.sleep(200);
        const ct = lab.conntrack(["-p", "tcp", "--dport", "5201", "-f", family === 4 ? "ipv4" : "ipv6"]);
        expect(ct).toMatch(/TIME_WAIT|CLOSE|LAST_ACK|FIN_WAIT|CLOSE_WAIT/);
        expect(ct).not.toMatch(/ESTABLISHED/);
      } finally {
        expect(await off.stop()).toBe(0);
      }
    }, 60_000);
  }

  test("UDP: offloaded in both directions after the first packets", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--hook", hook, "--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 3000);
      const before = lab.forwardedPackets();
      const res = await client.go();
      expect(res.received).toBe(res.sent);
      expect(lab.forwardedPackets() - before).toBe(0);
      off.kill("SIGUSR1");
      const m = await off.waitFor(/udp \S+ -> \S+:7001 .*orig lan->wan packets=(\d+) .*reply wan->lan packets=(\d+)/);
      expect(Number(m[1])).toBeGreaterThanOrEqual(3000);
      expect(Number(m[2])).toBeGreaterThanOrEqual(3000);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});

// The veth default: the senders leave checksums to the device, and the router receives
// CHECKSUM_PARTIAL packets, as from containers or VMs on the router itself.
describe.each(["tc", "xdp-native"])("--hook %s with CHECKSUM_PARTIAL packets (checksum offload on the senders)", (hook) => {
  let lab!: Lab;
  labFixture({ wireChecksums: false }, [tcpSink], (l) => (lab = l));

  for (const family of [4, 6] as const) {
    const what = hook === "tc" ? "offloaded, the partial checksum gets only the pseudo-header change" : "XDP leaves them to the kernel path, the transfer completes intact";
    test(`TCP over IPv${family}: ${what}`, async () => {
      const off = new Offloader(lab, ["lan", "wan", "--hook", hook]);
      try {
        await off.waitFor(/running on/);
        const client = await startTcpClient(lab, off, family === 4 ? ADDR.server4 : ADDR.server6, 16);
        const before = lab.forwardedPackets();
        const res = await client.go();
        // A wrong checksum would make the server drop segments and the transfer stall or fail.
        expect(res.reply.sha256).toBe(res.sent);
        expect(res.reply.bytes).toBe(16 * 1024 * 1024 + 1024);
        const m = await off.waitFor(/handed back tcp .* after (\d+)\+\d+ packets: FIN\/RST/, 5000);
        if (hook === "tc") {
          expect(Number(m[1])).toBeGreaterThan(100);
          expect(lab.forwardedPackets() - before).toBeLessThan(100);
        } else {
          // XDP cannot tell these segments from complete ones but by their checksum field:
          // every one of them went to the stack, which forwarded it (16 MiB is over 11,000).
          expect(Number(m[1])).toBeLessThan(100);
          expect(lab.forwardedPackets() - before).toBeGreaterThan(10_000);
        }
        expect(lab.invalidPackets()).toBe(0);
      } finally {
        expect(await off.stop()).toBe(0);
      }
    }, 60_000);
  }
});

describe("fail open", () => {
  let lab!: Lab;
  labFixture({}, [tcpSink], (l) => (lab = l));

  test("SIGKILL of the daemon mid-transfer: the transfer completes through the kernel", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"]);
    await off.waitFor(/running on/);
    const client = await startTcpClient(lab, off, ADDR.server4, 256);
    const result = client.go();
    await Bun.sleep(100);
    off.kill("SIGKILL");
    await off.stop();
    const atKill = lab.forwardedPackets();
    const res = await result;
    // The kill came mid-transfer: the rest of it went through the kernel's forward chain.
    expect(lab.forwardedPackets() - atKill).toBeGreaterThan(1000);
    expect(res.reply.sha256).toBe(res.sent);
    expect(res.reply.bytes).toBe(256 * 1024 * 1024 + 1024);
    // The XDP link died with the process: nothing is left attached to the router's devices.
    expect(lab.exec(lab.router, ["ip", "-d", "link", "show", "lan"])).not.toMatch(/xdp/);
    expect(lab.invalidPackets()).toBe(0);
  }, 60_000);

  test("SIGSTOP: after the heartbeat timeout the kernel forwards; SIGCONT: the fast path resumes", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--heartbeat-timeout", "1"]);
    try {
      await off.waitFor(/running on/);
      const echo = lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7001"]);
      await Bun.sleep(200);
      const client = await startUdpClient(lab, off, ADDR.server4, 5000, 1000);
      const done = client.go();
      off.kill("SIGSTOP");
      await Bun.sleep(1500); // past the heartbeat timeout
      const stopped = lab.forwardedPackets();
      await Bun.sleep(500);
      expect(lab.forwardedPackets() - stopped).toBeGreaterThan(100); // ~500 datagrams each way
      off.kill("SIGCONT");
      await Bun.sleep(1000); // the daemon's next heartbeat
      const resumed = lab.forwardedPackets();
      await Bun.sleep(500);
      expect(lab.forwardedPackets() - resumed).toBe(0);
      const res = await done;
      expect(res.received).toBe(res.sent);
      echo.kill();
    } finally {
      off.kill("SIGCONT");
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("a restarted daemon adopts the pinned flows of the one that was killed", async () => {
    const dirs = new StateDirs();
    let second: Offloader | null = null;
    try {
      const first = new Offloader(lab, ["lan", "wan"], dirs);
      await first.waitFor(/running on/);
      const client = await startTcpClient(lab, first, ADDR.server4, 1024);
      const result = client.go();
      await Bun.sleep(100);
      first.kill("SIGKILL");
      await first.stop();
      second = new Offloader(lab, ["lan", "wan"], dirs);
      await second.waitFor(/adopted 1 offloaded connection\(s\) from the previous run/);
      const res = await result;
      expect(res.reply.sha256).toBe(res.sent);
      // The adopted connection was the new daemon's to hand back at the FIN.
      await second.waitFor(/handed back tcp \S+ -> \S+:5201 after \d+\+\d+ packets: FIN\/RST/);
      expect(lab.invalidPackets()).toBe(0);
    } finally {
      if (second) expect(await second.stop()).toBe(0);
      dirs.remove();
    }
  }, 60_000);
});

describe("an admin's shaper on the egress device", () => {
  let lab!: Lab;
  // A root htb on wan, as SQM would set up (the lab's kernel has no cake).
  labFixture({}, [tcpSink], (l) => (lab = l), (l) => {
    l.exec(l.router, ["tc", "qdisc", "add", "dev", "wan", "root", "handle", "1:", "htb", "default", "10"]);
    l.exec(l.router, ["tc", "class", "add", "dev", "wan", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
  });

  const sentByShaper = () => {
    const out = lab.exec(lab.router, ["tc", "-s", "qdisc", "show", "dev", "wan"]);
    return Number(/Sent \d+ bytes (\d+) pkt/.exec(out)?.[1] ?? NaN);
  };

  test("with XDP, flows leaving by the shaped device take the TC path and go through the shaper", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"]);
    try {
      await off.waitFor(/running on/);
      expect(off.output).toMatch(/flows leaving by wan take the TC path: its root qdisc htb shapes traffic/);
      expect(off.output).toMatch(/attached to lan \(tc, beside xdp-native\)/);
      const client = await startTcpClient(lab, off, ADDR.server4, 16);
      const shaped = sentByShaper();
      const forwarded = lab.forwardedPackets();
      const res = await client.go();
      expect(res.reply.sha256).toBe(res.sent);
      // Offloaded (the forward chain saw almost nothing), yet every segment passed the shaper.
      expect(lab.forwardedPackets() - forwarded).toBeLessThan(100);
      expect(sentByShaper() - shaped).toBeGreaterThan(10_000);
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});
