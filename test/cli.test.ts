import { describe, expect, test } from "bun:test";
import { UsageError, parseRunArgs, rejectUnknownFlags, runArgs } from "../src/cli.ts";

const ifindex = (name: string) => ({ lan: 2, wan: 3 })[name] ?? 0;
const defaults = {
  hook: "auto", "max-flows": "65536", "tcp-timeout": "30", "udp-timeout": "30",
  "heartbeat-timeout": "5", drop: "blackhole", "drop-timeout": "5", "log-level": "info", "pin-path": "/sys/fs/bpf/ebpf-offloader", "run-dir": "/run/ebpf-offloader",
  pppoe: "", "dry-run": false, dsa: false,
};
const parse = (over: Partial<typeof defaults> & { _?: string[] }) =>
  parseRunArgs({ ...defaults, _: ["lan", "wan"], ...over }, ifindex);

describe("run arguments", () => {
  test("defaults", () => {
    expect(parse({})).toEqual({
      interfaces: ["lan", "wan"], hook: "auto", maxFlows: 65536, tcpTimeoutS: 30, udpTimeoutS: 30,
      heartbeatTimeoutS: 5, drop: "blackhole", dropTimeoutS: 5, logLevel: "info", pinPath: "/sys/fs/bpf/ebpf-offloader", runDir: "/run/ebpf-offloader",
      pppoe: {}, dryRun: false, dsa: false,
    });
    expect(parse({ dsa: true }).dsa).toBe(true);
    expect(parse({ pppoe: "pppoe-wan=wan.7,ppp1=eth1" }).pppoe).toEqual({ "pppoe-wan": "wan.7", ppp1: "eth1" });
    expect(parse({ "pin-path": "none", "run-dir": "/tmp/x/" })).toMatchObject({ pinPath: null, runDir: "/tmp/x" });
    // No interface named: the daemon finds the lowest devices of every routed interface.
    expect(parse({ _: [] }).interfaces).toEqual([]);
  });

  test.each([
    [{ _: ["lan", "eth9"] }, "no such interface: eth9"],
    [{ _: ["lan", "lan"] }, "interface named twice: lan"],
    [{ _: ["a/b"] }, "no such interface: a/b"],
    [{ drop: "all" }, '--drop must be one of off, blackhole, learn, not "all"'],
    [{ "drop-timeout": "0" }, '--drop-timeout must be a whole number from 1 to 3600, not "0"'],
    [{ hook: "xdp-offload" }, '--hook must be one of auto, xdp, xdp-native, xdp-generic, tc, not "xdp-offload"'],
    [{ "max-flows": "0" }, "--max-flows must be a whole number from 16"],
    [{ "max-flows": "1e6" }, "--max-flows must be a whole number"],
    [{ "tcp-timeout": "-1" }, "--tcp-timeout must be a whole number"],
    [{ "udp-timeout": "" }, "--udp-timeout must be a whole number"],
    [{ "log-level": "verbose" }, "--log-level must be one of error, warn, info, debug"],
    [{ "pin-path": "relative/dir" }, '--pin-path must be an absolute path, not "relative/dir"'],
    [{ "run-dir": "" }, "--run-dir must be an absolute path"],
    [{ pppoe: "pppoe-wan" }, '--pppoe takes PPPDEV=ETHDEV pairs, not "pppoe-wan"'],
  ])("rejects %j", (over, message) => {
    expect(() => parse(over)).toThrow(UsageError);
    expect(() => parse(over)).toThrow(message);
  });
});

describe("unknown flags", () => {
  test("known flags, values and negative numbers pass", () => {
    expect(() => rejectUnknownFlags(["run", "lan", "--hook", "tc", "--max-flows=1024", "--log-level", "debug"], runArgs)).not.toThrow();
  });

  test("a typo is an error naming the flag", () => {
    expect(() => rejectUnknownFlags(["run", "lan", "--max-flow=10"], runArgs)).toThrow("unknown option: --max-flow");
    expect(() => rejectUnknownFlags(["run", "-x"], runArgs)).toThrow("unknown option: -x");
  });
});
