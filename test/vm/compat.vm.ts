// Inside the VM: the oldest kernel we test on (Debian bookworm's 6.1) must load and verify the
// BPF object and run the daemon on plain veth devices.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { sh } from "../lab.ts";
import { BIN, Daemon } from "./daemon.ts";

const NS = `vm-compat-${process.pid.toString(36)}`;

beforeAll(() => {
  for (const ns of [NS, `${NS}-p`]) sh(["ip", "netns", "add", ns]);
  sh(["ip", "-n", NS, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns", `${NS}-p`]);
  sh(["ip", "-n", NS, "link", "add", "wan", "type", "veth", "peer", "name", "wanp"]);
  for (const dev of ["lo", "lan", "wan", "wanp"]) sh(["ip", "-n", NS, "link", "set", dev, "up"]);
  sh(["ip", "-n", NS, "addr", "add", "10.9.1.1/24", "dev", "lan"]);
  sh(["ip", "-n", NS, "addr", "add", "10.9.2.1/24", "dev", "wan"]);
  sh(["ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
});

afterAll(() => {
  for (const ns of [NS, `${NS}-p`]) sh(["ip", "netns", "del", ns], { allowFail: true });
});

test(`ebpf-offloader check: the verifier of ${sh(["uname", "-r"]).trim()} accepts the datapath`, () => {
  const r = Bun.spawnSync(["ip", "netns", "exec", NS, BIN, "check", "lan", "wan"], { stdout: "pipe", stderr: "pipe" });
  const out = r.stdout.toString() + r.stderr.toString();
  console.log(out);
  expect(out).toMatch(/^ok +datapath: /m);
  expect(out).toMatch(/^ok +XDP link: /m);
  expect(out).toMatch(/^ok +TC clsact: /m);
}, 120_000);

for (const hook of ["xdp", "tc"]) {
  test(`the daemon attaches to a veth pair with --hook ${hook} and detaches on SIGTERM`, async () => {
    const off = new Daemon(NS, ["lan", "wan", "--hook", hook]);
    try {
      await off.waitFor(/running on lan, wan/, 60_000);
      expect(off.output).toMatch(/attached to lan /);
      expect(off.output).toMatch(/attached to wan /);
    } finally {
      expect(await off.stop()).toBe(0);
    }
    // Nothing left behind: the XDP links and the TC filters went with the daemon.
    const link = sh(["ip", "-n", NS, "-d", "link", "show", "lan"]);
    expect(link).not.toMatch(/prog\/xdp/);
    expect(sh(["ip", "netns", "exec", NS, "tc", "filter", "show", "dev", "lan", "ingress"])).not.toMatch(/bpf/);
  }, 120_000);
}
