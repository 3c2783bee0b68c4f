// `ebpf-offloader check`: the verdicts as pure functions, then the compiled binary on this
// machine in a throwaway network namespace (veth pairs with and without XDP transmit), with fewer
// privileges, and with a library that does not load.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { realpathSync } from "node:fs";
import { verifierReason } from "../src/check-bpf.ts";
import { interfaceLines, type InterfaceFacts } from "../src/check-interfaces.ts";
import { conntrackAccounting, conntrackEvents } from "../src/check-netfilter.ts";
import { type CheckResult, formatJson, formatText } from "../src/check-result.ts";
import { bpffs, bpffsMounts, kernel, memlock, parseCapEff, parseKernelVersion, privileges, soVersion } from "../src/check-system.ts";
import { buildDevDump, buildGetFamily, parseDev, parseMessages, xdpFeatureNames } from "../src/xdp-features.ts";
import { findLibrary } from "../ffi/library-path.ts";
import { BIN } from "./offloader.ts";

const capsOf = (...bits: number[]) => bits.reduce((a, b) => a | (1n << BigInt(b)), 0n);
const NET_ADMIN = 12, SYS_ADMIN = 21, PERFMON = 38, BPF = 39;

describe("verdicts", () => {
  test("capabilities from /proc/self/status", () => {
    expect(parseCapEff("Name:\tx\nCapEff:\t000001fffeffffff\n")).toBe(0x1fffeffffffn);
    expect(() => parseCapEff("Name:\tx\n")).toThrow("no CapEff");
    expect(privileges(0, capsOf(BPF, NET_ADMIN, PERFMON)).status).toBe("ok");
    // Before CAP_BPF and CAP_PERFMON existed, CAP_SYS_ADMIN covered both.
    expect(privileges(0, capsOf(SYS_ADMIN, NET_ADMIN)).status).toBe("ok");
    const noPerfmon = privileges(0, capsOf(BPF, NET_ADMIN));
    expect(noPerfmon).toMatchObject({ status: "fail", detail: expect.stringContaining("missing CAP_PERFMON") });
    expect(privileges(0, 0n).detail).toContain("missing CAP_BPF CAP_NET_ADMIN CAP_PERFMON");
    // `run` refuses a non-root user even with every capability.
    expect(privileges(1000, capsOf(BPF, NET_ADMIN, PERFMON))).toMatchObject({ status: "fail", detail: expect.stringContaining("uid 1000") });
  });

  test("kernel versions", () => {
    expect(parseKernelVersion("5.15.0-91-generic")).toEqual([5, 15]);
    expect(parseKernelVersion("6.6.73")).toEqual([6, 6]);
    expect(kernel("5.4.0").status).toBe("fail");
    expect(kernel("5.10.176").status).toBe("ok");
    expect(kernel("weird").status).toBe("warn");
  });

  test("memlock matters only before 5.11", () => {
    const limits = "Max locked memory         8388608              8388608              bytes\n";
    expect(memlock("6.1.0", limits, 0n)).toBeNull();
    expect(memlock("5.10.0", limits, 0n)?.status).toBe("warn");
    expect(memlock("5.10.0", limits, capsOf(24))?.status).toBe("ok");
    expect(memlock("5.10.0", "Max locked memory  unlimited  unlimited  bytes\n", 0n)?.status).toBe("ok");
  });

  test("bpffs mounts, library versions, verifier reasons", () => {
    const mountinfo = "25 30 0:23 / /sys rw - sysfs sysfs rw\n41 25 0:36 / /sys/fs/bpf rw,relatime - bpf bpf rw,mode=700\n";
    expect(bpffsMounts(mountinfo)).toEqual(["/sys/fs/bpf"]);
    expect(bpffsMounts("25 30 0:23 / /sys rw - sysfs sysfs rw\n")).toEqual([]);
    expect(bpffs(mountinfo).status).toBe("ok");
    expect(bpffs("50 25 0:40 / /tmp/x rw - bpf bpf rw\n")).toMatchObject({ status: "warn", detail: expect.stringContaining("/tmp/x only") });
    expect(soVersion("/usr/lib/libnetfilter_conntrack.so.3.8.0", "libnetfilter_conntrack.so.3")).toBe("3.8.0");
    expect(soVersion("/usr/lib/libmnl.so.0", "libmnl.so.0")).toBeNull();
    expect(verifierReason("0: (b7) r0 = 0\n38: (bc) w5 = w2\nR2 partial copy of pointer\nprocessed 32 insns (limit 1000000)\n"))
      .toBe("R2 partial copy of pointer");
    expect(verifierReason("libbpf: failed to load object")).toBeNull();
  });

  test("conntrack sysctls", () => {
    expect(conntrackEvents("0").status).toBe("fail");
    expect(conntrackEvents("2").status).toBe("ok");
    expect(conntrackEvents(null).status).toBe("fail");
    expect(conntrackAccounting("1").status).toBe("warn");
    expect(conntrackAccounting("0").status).toBe("ok");
  });

  const facts = (over: Partial<InterfaceFacts>): InterfaceFacts => ({
    name: "eth0", ifindex: 2, kind: "igb", up: true, features: null, featuresNote: "no xdp-features",
    featuresAttached: null, attachedProgram: 0, trial: null, ...over,
  });
  const statuses = (f: InterfaceFacts) => interfaceLines(f).map((r) => r.status);

  test("interface verdicts from xdp-features, an attached program and a trial attach", () => {
    expect(statuses(facts({ ifindex: 0 }))).toEqual(["fail"]);
    expect(statuses(facts({ features: 1 | 2 | 4 }))).toEqual(["ok"]);
    expect(interfaceLines(facts({ features: 1 | 2 }))[0]?.detail).toContain("no XDP transmit now");
    // Transmit offered only while a program is attached (virtio_net): the trial settles it.
    expect(statuses(facts({ features: 1 | 2, featuresAttached: 1 | 2 | 4 }))).toEqual(["ok"]);
    expect(interfaceLines(facts({ features: 0 }))[0]?.detail).toContain("generic only");
    expect(statuses(facts({ features: 1 | 2 | 4, attachedProgram: 17 }))).toEqual(["warn", "ok"]);
    expect(interfaceLines(facts({}))[0]?.hint).toContain("--try-attach");
    expect(interfaceLines(facts({ trial: "ok" }))[0]?.detail).toContain("native XDP attach works");
    expect(interfaceLines(facts({ trial: "eth0: XDP native mode is not supported by this driver (EOPNOTSUPP)" }))[0]?.detail)
      .toContain("generic only");
  });

  test("netdev generic-netlink messages", () => {
    const buf = new Uint8Array(new ArrayBuffer(64));
    const v = new DataView(buf.buffer);
    expect(buildGetFamily(buf, 7, "netdev")).toBe(32);
    expect([v.getUint32(0, true), v.getUint16(4, true), v.getUint16(6, true), v.getUint32(8, true)]).toEqual([32, 0x10, 1, 7]);
    expect([buf[16], buf[17]]).toEqual([3, 1]); // CTRL_CMD_GETFAMILY, version 1
    expect([v.getUint16(20, true), v.getUint16(22, true)]).toEqual([11, 2]); // CTRL_ATTR_FAMILY_NAME
    expect(new TextDecoder().decode(buf.subarray(24, 31))).toBe("netdev\0");
    expect(buildDevDump(buf, 8, 0x22)).toBe(20);
    expect([v.getUint16(4, true), v.getUint16(6, true), buf[16]]).toEqual([0x22, 0x301, 1]); // dump of NETDEV_CMD_DEV_GET

    // A reply: IFINDEX 3, XDP_FEATURES basic|redirect|ndo-xmit, then NLMSG_DONE and an error for another seq.
    const rx = new Uint8Array(new ArrayBuffer(128));
    const r = new DataView(rx.buffer);
    const hdr = (off: number, len: number, type: number, seq: number) => {
      r.setUint32(off, len, true);
      r.setUint16(off + 4, type, true);
      r.setUint32(off + 8, seq, true);
    };
    hdr(0, 40, 0x22, 9);
    r.setUint16(20, 8, true);
    r.setUint16(22, 1, true);
    r.setUint32(24, 3, true);
    r.setUint16(28, 12, true);
    r.setUint16(30, 3, true);
    r.setBigUint64(32, 7n, true);
    hdr(40, 20, 3, 9); // NLMSG_DONE
    hdr(60, 36, 2, 10); // NLMSG_ERROR, seq 10
    r.setInt32(76, -2, true);
    const msgs = parseMessages(rx, 96, 9);
    expect(msgs.map((m) => m.kind)).toEqual(["data", "done"]);
    const data = msgs[0];
    if (data?.kind !== "data") throw new Error("no data message");
    expect(parseDev(rx, data.attrs)).toEqual({ ifindex: 3, features: 7 });
    expect(xdpFeatureNames(7)).toBe("basic,redirect,ndo-xmit");
    expect(parseMessages(rx, 96, 10)).toEqual([{ kind: "error", errno: 2 }]);
    expect(() => parseMessages(rx, 30, 9)).toThrow("malformed");
  });

  test("text and JSON output", () => {
    const results: CheckResult[] = [
      { status: "ok", item: "kernel", detail: "Linux 6.1" },
      { status: "warn", item: "bpffs", detail: "not mounted", hint: "mount it" },
    ];
    expect(formatText(results)).toBe("ok    kernel: Linux 6.1\nwarn  bpffs: not mounted\n      hint: mount it\nno failures, 1 warning(s)\n");
    expect(JSON.parse(formatJson(results))).toEqual({ ok: true, checks: results });
    expect(JSON.parse(formatJson([...results, { status: "fail", item: "x", detail: "y", hint: "z" }])).ok).toBe(false);
  });
});

interface Report {
  ok: boolean;
  checks: CheckResult[];
}

function run(cmd: string[]): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
function sh(cmd: string[]): string {
  const r = run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}
const line = (rep: Report, item: string) => rep.checks.find((c) => c.item === item);

describe("the binary on this machine", () => {
  const NS = `eo-check-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const inNs = (args: string[]) => run(["ip", "netns", "exec", NS, ...args]);

  beforeAll(() => {
    sh(["ip", "netns", "add", NS]);
    // ca's peer has GRO on, so ca can transmit XDP-redirected frames; cb's peer has not.
    sh(["ip", "-n", NS, "link", "add", "ca", "type", "veth", "peer", "name", "cb"]);
    for (const dev of ["lo", "ca", "cb"]) sh(["ip", "-n", NS, "link", "set", dev, "up"]);
    sh(["ip", "netns", "exec", NS, "ethtool", "-K", "cb", "gro", "on"]);
  });
  afterAll(() => {
    run(["ip", "netns", "del", NS]);
  });

  test("everything the offloader needs is here; veth transmit follows its peer's GRO", () => {
    const r = inNs([BIN, "check", "--json", "ca", "cb", "--try-attach"]);
    const rep = JSON.parse(r.stdout) as Report;
    for (const item of ["privileges", "kernel", "libbpf", "libnetfilter_conntrack", "libmnl", "bpf syscall", "bpf maps",
      "datapath", "XDP link", "TC clsact", "ctnetlink"]) {
      expect(line(rep, item)).toMatchObject({ item, status: "ok" });
    }
    expect(line(rep, "libbpf")?.detail).toContain(realpathSync(findLibrary(["libbpf.so.1"])));
    expect(line(rep, "libmnl")?.detail).toContain(`so ${soVersion(realpathSync(findLibrary(["libmnl.so.0"])), "libmnl.so.0")}`);
    expect(line(rep, "interface ca")).toMatchObject({ status: "ok", detail: expect.stringContaining("ndo-xmit") });
    expect(line(rep, "interface cb")).toMatchObject({ status: "warn", detail: expect.stringContaining("no XDP transmit (virtual, up") });
    // ip netns exec gives the namespace its own /sys, without the bpffs mount.
    expect(line(rep, "bpffs")?.status).toBe("warn");
    expect(rep.ok).toBe(true);
    expect(r.code).toBe(0);
  });

  test("nothing stays attached", () => {
    for (const dev of ["lo", "ca", "cb"]) {
      const links = JSON.parse(sh(["ip", "-n", NS, "-j", "link", "show", "dev", dev])) as { xdp?: unknown }[];
      expect(links[0]?.xdp).toBeUndefined();
      expect(sh(["tc", "-n", NS, "qdisc", "show", "dev", dev])).not.toContain("clsact");
    }
  });

  test("text output; an unknown interface fails with exit 1", () => {
    const r = inNs([BIN, "check", "ca", "nosuchdev0"]);
    expect(r.stdout).toMatch(/^ok {4}datapath: /m);
    expect(r.stdout).toMatch(/^fail {2}interface nosuchdev0: no such interface\n {6}hint: /m);
    expect(r.stdout).toMatch(/^1 failed, \d+ warning\(s\)/m);
    expect(r.code).toBe(1);
  });

  test("without CAP_BPF and CAP_PERFMON: fail lines, exit 1", () => {
    const r = inNs(["setpriv", "--bounding-set=-all,+net_admin", "--inh-caps=-all", "--", BIN, "check", "--json", "ca"]);
    const rep = JSON.parse(r.stdout) as Report;
    expect(line(rep, "privileges")).toMatchObject({ status: "fail", detail: expect.stringContaining("missing CAP_BPF CAP_PERFMON") });
    expect(line(rep, "bpf syscall")).toMatchObject({ status: "fail", detail: expect.stringContaining("EPERM") });
    expect(line(rep, "ctnetlink")?.status).toBe("ok");
    expect(r.code).toBe(1);
  });

  test("a library that does not load is a fail line, not a crash", () => {
    // A private mount namespace where the real libbpf file is an empty one.
    const lib = realpathSync(findLibrary(["libbpf.so.1"]));
    const r = run(["unshare", "-m", "sh", "-c", 'mount --bind /dev/null "$1" && exec "$2" check --json lo', "sh", lib, BIN]);
    const rep = JSON.parse(r.stdout) as Report;
    expect(line(rep, "libbpf")?.status).toBe("fail");
    expect(line(rep, "bpf")).toMatchObject({ status: "fail", detail: "not checked without a usable libbpf" });
    expect(line(rep, "ctnetlink")?.status).toBe("ok");
    expect(r.code).toBe(1);
  });
});
