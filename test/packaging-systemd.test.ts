// The systemd unit: `systemd-analyze verify` and `security --offline` on it (offline: no systemd
// runs here), and the daemon offloading a connection in the NAT lab with exactly the unit's
// capability bounding set, no_new_privs and its file system view (read-only but for /tmp, its
// runtime directory and /sys/fs/bpf).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADDR, Lab } from "./lab.ts";
import { BIN } from "./offloader.ts";
import { BUN, FIX, Output } from "./traffic.ts";

const DIR = join(import.meta.dir, "..", "packaging", "systemd");
const UNIT = readFileSync(join(DIR, "ebpf-offloader.service"), "utf8");

/** The value of a `Key=` line of the unit. */
const setting = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(UNIT)?.[1];

function analyze(args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(["systemd-analyze", ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, SYSTEMD_LOG_COLOR: "0" } });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
}

describe("systemd unit, offline", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), `eo-systemd-${process.pid}-`));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  /** The unit with ExecStart and EnvironmentFile pointing into tmp, where verify can find them. */
  function placed(name: string, unit: string): string {
    const bin = join(tmp, "ebpf-offloader");
    writeFileSync(bin, "#!/bin/sh\n");
    chmodSync(bin, 0o755);
    copyFileSync(join(DIR, "ebpf-offloader.default"), join(tmp, "default"));
    const path = join(tmp, name);
    writeFileSync(path, unit.replaceAll("/usr/local/sbin/ebpf-offloader", bin).replaceAll("/etc/default/ebpf-offloader", join(tmp, "default")));
    return path;
  }

  test("systemd-analyze verify has nothing to say", () => {
    const r = analyze(["verify", placed("ebpf-offloader.service", UNIT)]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
  });

  test("verify does check: a misspelt or unknown setting is reported", () => {
    const broken = UNIT.replace("ProtectHome=yes", "ProtectHomes=yes").replace("Restart=on-failure", "Restart=on-failur");
    const r = analyze(["verify", placed("broken.service", broken)]);
    expect(r.err).toContain("Unknown key 'ProtectHomes'");
    expect(r.err).toContain("on-failur");
  });

  test("least capabilities, restart on failure, hardening", () => {
    expect(setting("CapabilityBoundingSet")?.split(/\s+/).sort()).toEqual(["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
    expect(setting("Restart")).toBe("on-failure");
    expect(setting("EnvironmentFile")).toBe("/etc/default/ebpf-offloader");
    expect(setting("ExecStart")).toBe("/usr/local/sbin/ebpf-offloader run $EBPF_OFFLOADER_ARGS");
    for (const [k, v] of [["ProtectSystem", "strict"], ["ProtectHome", "yes"], ["NoNewPrivileges", "yes"], ["PrivateTmp", "yes"],
      ["SystemCallArchitectures", "native"], ["RestrictAddressFamilies", "AF_NETLINK AF_UNIX"], ["LimitMEMLOCK", "infinity"]]) {
      expect(setting(k!)).toBe(v);
    }
    const r = analyze(["security", "--offline=yes", placed("ebpf-offloader.service", UNIT)]);
    const level = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.out)?.[1]);
    expect(level).toBeLessThan(4);
  });
});

describe("the daemon with only what the unit grants", () => {
  let lab: Lab;
  let echo: { kill(): void } | null = null;

  beforeAll(async () => {
    lab = new Lab({ prefix: "eosd" }).create();
    echo = lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7001"]);
    await Bun.sleep(300);
  });
  afterAll(() => {
    echo?.kill();
    lab?.destroy();
  });

  // XDP native and generic differ in one attach flag only; both need the same capabilities.
  test.each(["xdp-generic", "tc"])("--hook %s: offloads a UDP flow with CAP_BPF CAP_NET_ADMIN CAP_PERFMON only", async (hook) => {
    const caps = (setting("CapabilityBoundingSet") ?? "").split(/\s+/).map((c) => `+${c.replace(/^CAP_/, "").toLowerCase()}`);
    // The unit's file system view in a private mount namespace, then its bounding set and no_new_privs.
    const script = [
      "set -e",
      "mount -t tmpfs tmpfs /run && mkdir /run/ebpf-offloader", // RuntimeDirectory
      // The binary under test may live below /tmp (a CI clone), which PrivateTmp hides.
      'cp "$2" /run/ebpf-offloader.bin',
      "mount -o bind,remount,ro /", // ProtectSystem=strict
      "mount -t tmpfs tmpfs /tmp", // PrivateTmp
      "mount -o remount,ro /sys", // ProtectKernelTunables (ip netns exec gave us a sysfs of our own)
      "mount --bind /proc/sys /proc/sys && mount -o bind,remount,ro /proc/sys",
      "mount -t bpf bpf /sys/fs/bpf", // ReadWritePaths=-/sys/fs/bpf
      'exec setpriv --no-new-privs "--bounding-set=$1" --inh-caps=-all -- /run/ebpf-offloader.bin run lan wan --hook "$3" --log-level debug',
    ].join("\n");
    const proc = Bun.spawn(["ip", "netns", "exec", lab.router, "unshare", "-m", "sh", "-c", script, "sh", `-all,${caps.join(",")}`, BIN, hook],
      { stdout: "pipe", stderr: "pipe" });
    let log = "";
    const reading = (async () => {
      for await (const chunk of proc.stderr) log += new TextDecoder().decode(chunk);
    })();
    const waitFor = async (re: RegExp, ms: number) => {
      for (const end = Date.now() + ms; !re.test(log); await Bun.sleep(25)) {
        if (Date.now() > end || proc.exitCode !== null) throw new Error(`never saw ${re} (exit ${proc.exitCode}):\n${log}`);
      }
    };
    try {
      await waitFor(/running on lan, wan/, 10_000);
      const client = lab.spawn(lab.client, [BUN, `${FIX}/udp-send.ts`, ADDR.server4, "7001", "400", "200"]);
      const out = new Output(client.stdout);
      await out.waitLine(/^ready/);
      await waitFor(/offloaded udp .*:7001 -> .* wan -> lan/, 5000);
      client.stdin.write("go\n");
      client.stdin.flush();
      const res = JSON.parse(await out.lastLine()) as { sent: number; received: number };
      expect(res.received).toBe(res.sent);
      // Nothing it could not do: pinning below /sys/fs/bpf, the status file in its runtime directory.
      expect(log).not.toMatch(/^(warn|error):/m);
    } finally {
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await reading;
    }
  }, 30_000);
});
