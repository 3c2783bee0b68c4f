// Bad command lines and bad configuration: every error is one clear line on stderr
// ("ebpf-offloader: ..."), a non-zero exit, and nothing left attached or pinned. A second daemon
// must not disturb the first.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { ADDR, Lab, removeStaleLabs } from "./lab.ts";
import { BIN, Offloader, StateDirs } from "./offloader.ts";
import { BUN, FIX, startUdpClient } from "./traffic.ts";
import { attachedTo } from "./fixtures/faults.ts";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the daemon in the router namespace; one that keeps running is killed and reported. */
async function runDaemon(lab: Lab, args: string[]): Promise<Run> {
  const proc = Bun.spawn(["ip", "netns", "exec", lab.router, BIN, "run", ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  // A daemon still running after 8 s did not fail: stop it (cleanly, so it detaches) and report it.
  const term = setTimeout(() => proc.kill("SIGTERM"), 8_000);
  const kill = setTimeout(() => proc.kill("SIGKILL"), 13_000);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(term);
    clearTimeout(kill);
  }
}

/** The error contract: exactly one stderr line, prefixed, nothing on stdout, a failing exit. */
function expectOneLineError(r: Run, message: RegExp): void {
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect({ lines, stdout: r.stdout }).toEqual({ lines: [expect.stringMatching(/^ebpf-offloader: /)], stdout: "" });
  expect(lines[0]).toMatch(message);
  expect(r.code).not.toBe(0);
}

const DEVICES = ["lan", "wan", "vx0"];

describe("bad command lines and configuration", () => {
  let lab: Lab;
  let dirs: StateDirs;
  const children: { kill(): void }[] = [];

  beforeAll(async () => {
    removeStaleLabs("eo");
    lab = new Lab().create();
    // A routed device without native XDP: vxlan has no ndo_bpf (veth has; this kernel has no dummy).
    lab.exec(lab.router, ["ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789"]);
    lab.exec(lab.router, ["ip", "addr", "add", "10.200.50.1/24", "dev", "vx0"]);
    lab.exec(lab.router, ["ip", "link", "set", "vx0", "up"]);
    dirs = new StateDirs();
    children.push(lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7001"]));
    await Bun.sleep(300);
  });

  afterAll(() => {
    for (const c of children) c.kill();
    lab?.destroy();
    dirs?.remove();
  });

  /** Nothing attached to any router device, nothing pinned, no status file. */
  const expectNothingLeft = () => {
    expect(DEVICES.flatMap((d) => attachedTo(lab, d))).toEqual([]);
    expect(existsSync(dirs.pinPath) ? readdirSync(dirs.pinPath) : []).toEqual([]);
    expect(existsSync(`${dirs.runDir}/status.json`)).toBe(false);
  };

  const state = () => ["--pin-path", dirs.pinPath, "--run-dir", dirs.runDir];

  test.each([
    [["nosuch0", "wan"], /no such interface: nosuch0/],
    [["lan", "wan", "--bogus"], /unknown option: --bogus/],
    [["lan", "wan", "--max-flow", "1024"], /unknown option: --max-flow/],
    [["lan", "wan", "--max-flows", "abc"], /--max-flows must be a whole number/],
    [["lan", "wan", "--max-flows", "0"], /--max-flows must be a whole number/],
    [["lan", "wan", "--max-flows", "1e3"], /--max-flows must be a whole number/],
    [["lan", "wan", "--max-flows", "16777217"], /--max-flows must be a whole number/],
    [["lan", "wan", "--max-flows", "99999999999999999999"], /--max-flows must be a whole number/],
    [["lan", "wan", "--max-flows="], /--max-flows/],
    [["lan", "wan", "--tcp-timeout", "0"], /--tcp-timeout must be a whole number/],
    [["lan", "wan", "--udp-timeout", "-5"], /--udp-timeout must be a whole number/],
    [["lan", "wan", "--heartbeat-timeout", "1.5"], /--heartbeat-timeout must be a whole number/],
    [["lan", "wan", "--hook", "xdp-turbo"], /--hook must be one of/],
    [["lan", "wan", "--log-level", "loud"], /--log-level must be one of/],
    [["lan", "lan"], /interface named twice: lan/],
  ])("run %j: one line, non-zero exit, nothing attached", async (args, message) => {
    expectOneLineError(await runDaemon(lab, [...args, ...state()]), message);
    expectNothingLeft();
  }, 30_000);

  test("relative --pin-path and --run-dir: one line each", async () => {
    expectOneLineError(await runDaemon(lab, ["lan", "wan", "--pin-path", "bpf/x", "--run-dir", dirs.runDir]), /--pin-path must be an absolute path/);
    expectOneLineError(await runDaemon(lab, ["lan", "wan", "--pin-path", dirs.pinPath, "--run-dir", "run"]), /--run-dir must be an absolute path/);
    expectNothingLeft();
  }, 30_000);

  test("--hook xdp-native with a device that lacks native XDP: one line, the other device detached again", async () => {
    // lan (veth) takes native XDP, vx0 (dummy) refuses it: lan's attachment must be rolled back.
    const r = await runDaemon(lab, ["lan", "vx0", "--hook", "xdp-native", ...state()]);
    expectOneLineError(r, /vx0: XDP native mode is not supported/);
    expectNothingLeft();
  }, 30_000);

  test("--hook auto with a device that lacks native XDP: TC on all of them, detached on exit", async () => {
    const off = new Offloader(lab, ["lan", "vx0"]);
    try {
      await off.waitFor(/running on/);
      expect(off.output).toMatch(/attached to lan \(tc\)/);
      expect(off.output).toMatch(/attached to vx0 \(tc\)/);
    } finally {
      expect(await off.stop()).toBe(0);
    }
    expect(DEVICES.flatMap((d) => attachedTo(lab, d))).toEqual([]);
  }, 30_000);

  test("a pin path that is not on bpffs: one warning, the daemon runs and offloads, nothing created there", async () => {
    const notBpf = `${dirs.root}/plain/offloader`;
    mkdirSync(`${dirs.root}/plain`, { recursive: true });
    const runDir = `${dirs.root}/run-plain`;
    // Offloader takes its pin path from the state directories: these point it off bpffs.
    const plain: StateDirs = { root: dirs.root, runDir, bpffs: `${dirs.root}/plain`, pinPath: notBpf, remove: () => {} };
    const off = new Offloader(lab, ["lan", "wan"], plain);
    try {
      await off.waitFor(/running on/);
      const warnings = off.output.split("\n").filter((l) => l.startsWith("warn:"));
      expect(warnings).toEqual([expect.stringMatching(/^warn: not pinning maps .*is not a BPF filesystem/)]);
      expect(existsSync(notBpf)).toBe(false);
      const client = await startUdpClient(lab, off, ADDR.server4, 200);
      const res = await client.go();
      expect(res.received).toBe(res.sent);
      const status = JSON.parse(readFileSync(`${runDir}/status.json`, "utf8")) as { pinPath: string | null };
      expect(status.pinPath).toBeNull();
    } finally {
      expect(await off.stop()).toBe(0);
      rmSync(runDir, { recursive: true, force: true });
    }
    const log = off.output;
    expect(log.split("\n").filter((l) => l.startsWith("error:"))).toEqual([]);
    expect(existsSync(notBpf)).toBe(false);
    expect(DEVICES.flatMap((d) => attachedTo(lab, d))).toEqual([]);
  }, 30_000);

  /** The first daemon is untouched: alive, attached, its pins and status file in place, offloading. */
  const expectFirstUntouched = async (first: Offloader, hook: RegExp) => {
    expect(first.output).not.toMatch(/detached|stopping/);
    expect(attachedTo(lab, "lan").join("\n")).toMatch(hook);
    expect(attachedTo(lab, "wan").join("\n")).toMatch(hook);
    expect(readdirSync(first.dirs.pinPath).sort()).toEqual(["flow_config", "flow_stats", "flows", "iface_stats"]);
    const status = JSON.parse(readFileSync(`${first.dirs.runDir}/status.json`, "utf8")) as { pid: number; updatedAt: number };
    expect(status.pid).toBe(first.pid);
    await Bun.sleep(1500);
    const later = JSON.parse(readFileSync(`${first.dirs.runDir}/status.json`, "utf8")) as { updatedAt: number };
    expect(later.updatedAt).toBeGreaterThan(status.updatedAt);
    const client = await startUdpClient(lab, first, ADDR.server4, 200);
    const res = await client.go();
    expect(res.received).toBe(res.sent);
  };

  test("a second daemon with the same --run-dir fails clearly and leaves the first running untouched", async () => {
    const first = new Offloader(lab, ["lan", "wan"]);
    try {
      await first.waitFor(/running on/);
      const r = await runDaemon(lab, ["lan", "wan", "--pin-path", first.dirs.pinPath, "--run-dir", first.dirs.runDir]);
      expectOneLineError(r, new RegExp(`another ebpf-offloader \\(pid ${first.pid}\\) is running with run directory`));
      await expectFirstUntouched(first, /XDP/);
    } finally {
      expect(await first.stop()).toBe(0);
    }
  }, 30_000);

  // Two daemons must never share one set of pinned maps: each would overwrite the other's flows,
  // and the one that exits removes the other's pins.
  test.each(["auto", "xdp-native"])("a second daemon (--hook %s) on the same devices and pin path, another --run-dir: fails clearly, the first keeps its pins", async (hook) => {
    const first = new Offloader(lab, ["lan", "wan"]);
    const otherRun = `${dirs.root}/run-second`;
    try {
      await first.waitFor(/running on/);
      const r = await runDaemon(lab, ["lan", "wan", "--hook", hook, "--pin-path", first.dirs.pinPath, "--run-dir", otherRun]);
      // Refused before it touches anything: the pin directory is locked by the first daemon.
      expectOneLineError(r, /another ebpf-offloader uses the pinned maps in /);
      expect(existsSync(`${otherRun}/status.json`)).toBe(false);
      await expectFirstUntouched(first, /XDP/);
    } finally {
      expect(await first.stop()).toBe(0);
      rmSync(otherRun, { recursive: true, force: true });
    }
  }, 30_000);
});
