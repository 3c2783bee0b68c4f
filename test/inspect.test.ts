// `status` and `flows` from another shell while the daemon carries traffic: they must show what
// is really happening (attachments, the offloaded connection with its NAT and counters).
import { describe, expect, test } from "bun:test";
import { ADDR, type Lab } from "./lab.ts";
import { BIN, Offloader } from "./offloader.ts";
import { labFixture, startUdpClient, udpEcho } from "./traffic.ts";

describe("status and flows", () => {
  let lab!: Lab;
  labFixture({}, [udpEcho], (l) => (lab = l));

  const cli = (args: string[]) => {
    const r = Bun.spawnSync(["ip", "netns", "exec", lab.router, BIN, ...args], { stdout: "pipe", stderr: "pipe" });
    return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
  };

  test("show the daemon, its devices, the offloaded flow with NAT and counters", async () => {
    const off = new Offloader(lab, ["lan", "wan", "--hook", "xdp-native"]);
    try {
      await off.waitFor(/running on/);
      const client = await startUdpClient(lab, off, ADDR.server4, 1500, 1000);
      const done = client.go();
      await Bun.sleep(1200); // traffic on the fast path, and a status file written since
      const runDir = ["--run-dir", off.dirs.runDir];

      const status = cli(["status", ...runDir]);
      expect(status.code).toBe(0);
      expect(status.out).toMatch(new RegExp(`running, pid \\d+, up \\d+s`));
      expect(status.out).toMatch(/attached: lan \(xdp-native\), wan \(xdp-native\)/);
      expect(status.out).toMatch(/connections: 1 offloaded/);
      expect(status.out).toMatch(/flow map: 2 of 65536 entries/);
      const lan = /lan: fast path (\d+) packets/.exec(status.out);
      expect(Number(lan?.[1])).toBeGreaterThan(500);

      const flows = cli(["flows", ...runDir]);
      expect(flows.code).toBe(0);
      const line = flows.out.trim();
      expect(line.split("\n")).toHaveLength(1);
      expect(line).toMatch(/^udp +orig 10\.200\.1\.2:(\d+) -> 10\.200\.2\.2:7001 snat=10\.200\.2\.1:\1 lan->wan packets=\d+ bytes=\d+ \| reply 10\.200\.2\.2:7001 -> 10\.200\.2\.1:\1 dnat=10\.200\.1\.2:\1 wan->lan packets=\d+/);
      const json = JSON.parse(cli(["flows", "--json", ...runDir]).out) as { proto: string; dirs: { packets: number }[] }[];
      expect(json[0]?.proto).toBe("udp");
      expect(json[0]?.dirs[0]?.packets).toBeGreaterThan(500);
      expect(cli(["flows", "--proto", "tcp", ...runDir]).out).toBe("");
      expect(cli(["flows", "--iface", "wan", ...runDir]).out.trim().split("\n")).toHaveLength(1);
      const offloaded = cli(["flows", "--state", "offloaded", ...runDir]).out.trim().split("\n");
      expect(offloaded).toHaveLength(1);
      expect(offloaded[0]).toMatch(/^udp +orig 10\.200\.1\.2:\d+ -> 10\.200\.2\.2:7001 /);
      // No drop entries here (test/dropper.test.ts lists some), and nothing closing.
      expect(cli(["flows", "--state", "dropped", ...runDir]).out).toBe("");
      expect(cli(["flows", "--state", "closing", ...runDir]).out).toBe("");
      await done;
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);

  test("without a running daemon: one clear line and exit 1", () => {
    const r = cli(["status", "--run-dir", "/tmp/eo-no-such-dir"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe("ebpf-offloader: no ebpf-offloader is running with run directory /tmp/eo-no-such-dir\n");
    const bad = cli(["flows", "--proto", "icmp"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('ebpf-offloader: --proto must be tcp or udp, not "icmp"\n');
    const badState = cli(["flows", "--state", "drop"]);
    expect(badState.code).toBe(2);
    expect(badState.err).toBe('ebpf-offloader: --state must be offloaded, closing, dropped, not "drop"\n');
  });
});
