// The VM benchmark's section of docs/BENCHMARKS.md (bench/vmreport.ts): ratios are taken per
// round against the kernel path and the flowtable of the same round, then summarised.
import { expect, test } from "bun:test";
import type { VmResult } from "../bench/results.ts";
import { renderVm } from "../bench/vmreport.ts";

const round = (pps: number, viaKernel = 0) => ({ pps, offered: pps, viaKernel });

const result: VmResult = {
  date: "2026-01-01T00:00:00.000Z",
  command: "bun bench/vm.ts",
  machine: { cpus: 2, kernel: "6.18", cpuModel: "test CPU" },
  loadavg: "0.1 0.1 0.1",
  vm: { kernel: "6.1.0-56-amd64", cpus: 2, memMiB: 4096, bootS: 9, totalS: 500 },
  rounds: 3, seconds: 1, flows: 1, tcpRounds: 2, tcpSeconds: 4,
  labs: [{
    topology: "ethernet",
    pps: [
      { config: "kernel", rounds: [round(10_000, 1), round(20_000, 1), round(10_000, 1)] },
      { config: "flowtable", rounds: [round(20_000), round(40_000), round(20_000)] },
      { config: "xdp-native", rounds: [round(30_000), round(40_000), round(20_000)] },
      { config: "tc", rounds: [round(10_000), round(20_000), round(10_000)] },
    ],
    tcp: [
      { config: "kernel", runs: [{ bps: 50e6, retransmits: 1, fwdPerMB: 800 }, { bps: 50e6, retransmits: 2, fwdPerMB: 790 }] },
      { config: "flowtable", runs: [{ bps: 100e6, retransmits: 0, fwdPerMB: 1 }, { bps: 100e6, retransmits: 0, fwdPerMB: 2 }] },
      { config: "xdp-native", runs: [] },
      { config: "tc", runs: [{ bps: 100e6, retransmits: 0, fwdPerMB: 3 }, { bps: 50e6, retransmits: 0, fwdPerMB: 5 }] },
    ],
    warmUp: ["flowtable: 1 flow(s) offloaded within 1.0 s"],
    notes: ["xdp-native: TCP round 1 failed (later rounds skipped): iperf3: exit 1"],
  }],
};

test("per-round ratios to the kernel path and the flowtable, failed runs and noise flagged", () => {
  const md = renderVm(result);
  // Each label has a row in the packets/s table, then one in the TCP table.
  const rows = (label: string) => md.split("\n").filter((l) => l.startsWith(`| ${label} `)).map((l) => l.split("|").map((c) => c.trim()));
  const row = (label: string, table = 0) => rows(label)[table] ?? [];
  // xdp-native per round: 3, 2, 2 x kernel; 1.5, 1, 1 x flowtable.
  expect(row("ebpf-offloader xdp-native").slice(4, 6)).toEqual(["2.00 (2.00–3.00)", "1.00 (1.00–1.50)"]);
  expect(row("nft flowtable").slice(4, 7)).toEqual(["2.00 (2.00–2.00)", "1", "0%"]);
  expect(row("kernel path")[6]).toBe("100%");
  expect(row("ebpf-offloader xdp-native", 1).slice(2, 5)).toEqual(["failed", "-", "-"]);
  expect(row("ebpf-offloader xdp-native", 1)[7]).toBe("0/2");
  // tc per round: 2, 1 x kernel; 1, 0.5 x flowtable.
  expect(row("ebpf-offloader tc", 1).slice(2, 5)).toEqual(["75 (50–100)", "1.50 (1.00–2.00)", "0.75 (0.50–1.00)"]);
  expect(md).toContain("Noisy (packets/s): the per-round ratio to the kernel path spread by more than 30% of its median for ebpf-offloader xdp-native.");
  expect(md).toContain("Noisy (TCP): the per-round ratio to the kernel path spread by more than 30% of its median for ebpf-offloader tc.");
  expect(md).toContain("- xdp-native: TCP round 1 failed");
  expect(md).toContain("`qemu-system-x86_64 -accel tcg`");
});
