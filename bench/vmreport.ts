// The "kernel flowtable" section of docs/BENCHMARKS.md, from bench/results.json's "vm" part
// (`npm run bench:vm`, bench/vm.ts).
import type { VmLabResult, VmResult } from "./results.ts";
import { fmtSpread, median, pps, ratios, spread, table } from "./stats.ts";
import type { VmConfig } from "./vmlab.ts";

const TITLES: Record<VmLabResult["topology"], string> = {
  ethernet: "Plain Ethernet (client -- lan | router | wan -- server)",
  pppoe: "OpenWrt WAN: PPPoE in VLAN 7, bridged LAN (client -- lan1 | br-lan router pppoe-wan > wan.7 > wan | -- ISP)",
};

const LABELS: Record<VmConfig, string> = {
  kernel: "kernel path",
  flowtable: "nft flowtable",
  "xdp-native": "ebpf-offloader xdp-native",
  tc: "ebpf-offloader tc",
};

/** Per-round ratios of a configuration to `base`, rounds where either is missing left out. */
function roundRatios(values: Map<VmConfig, number[]>, c: VmConfig, base: VmConfig): number[] {
  const a = values.get(c) ?? [];
  const b = values.get(base) ?? [];
  const n = Math.min(a.length, b.length);
  return ratios(a.slice(0, n), b.slice(0, n)).filter(Number.isFinite);
}

function xOf(values: Map<VmConfig, number[]>, c: VmConfig, base: VmConfig): string {
  const r = roundRatios(values, c, base);
  if (c === base) return r.length ? "1" : "-";
  return r.length ? fmtSpread(spread(r)) : "-";
}

/** Configurations whose per-round ratio to the kernel path spread by more than 30% of its median. */
function noisy(values: Map<VmConfig, number[]>): string[] {
  return [...values.keys()].filter((c) => {
    const s = spread(roundRatios(values, c, "kernel"));
    return c !== "kernel" && s.max - s.min > 0.3 * s.median;
  }).map((c) => LABELS[c]);
}

function noiseNote(what: string, configs: string[]): string {
  return configs.length ? `Noisy (${what}): the per-round ratio to the kernel path spread by more than 30% of its median for ${configs.join(", ")}.\n\n` : "";
}

function renderLab(l: VmLabResult, v: VmResult): string {
  const ppsOf = new Map(l.pps.map((x) => [x.config, x.rounds.map((r) => r.pps)]));
  const ppsRows = l.pps.map((x) => {
    const s = spread(x.rounds.map((r) => r.pps));
    return [
      LABELS[x.config], pps(s.median), `${pps(s.min)}–${pps(s.max)}`, xOf(ppsOf, x.config, "kernel"),
      xOf(ppsOf, x.config, "flowtable"), `${(Math.max(...x.rounds.map((r) => r.viaKernel)) * 100).toFixed(0)}%`,
    ];
  });
  const bpsOf = new Map(l.tcp.map((x) => [x.config, x.runs.map((r) => r.bps)]));
  const tcpRows = l.tcp.map((x) => {
    const s = spread(x.runs.map((r) => r.bps / 1e6));
    return [
      LABELS[x.config], x.runs.length ? fmtSpread(s, 0) : "failed", xOf(bpsOf, x.config, "kernel"), xOf(bpsOf, x.config, "flowtable"),
      x.runs.length ? median(x.runs.map((r) => r.fwdPerMB)).toFixed(1) : "-",
      x.runs.length ? String(x.runs.reduce((n, r) => n + r.retransmits, 0)) : "-", `${x.runs.length}/${v.tcpRounds}`,
    ];
  });
  return `### ${TITLES[l.topology]}

64-byte UDP, ${v.flows} flow(s), ${v.rounds} rounds of ${v.seconds} s:

${table(["configuration", "median pps", "min–max pps", "× kernel", "× flowtable", "via forward chain (max)"], ppsRows)}

TCP, one iperf3 stream client -> server over IPv4, ${v.tcpRounds} rounds of ${v.tcpSeconds} s:

${table(["configuration", "Mbit/s median (min–max)", "× kernel", "× flowtable", "fwd-chain pkts/MB", "retransmits", "runs ok"], tcpRows)}

${noiseNote("packets/s", noisy(ppsOf))}${noiseNote("TCP", noisy(bpsOf))}Warm-up: ${l.warmUp.join("; ") || "-"}.
${l.notes.length ? `\nNotes:\n\n${l.notes.map((n) => `- ${n}`).join("\n")}\n` : ""}`;
}

export function renderVm(v: VmResult): string {
  return `## Kernel flowtable vs offloader, in the VM (\`npm run bench:vm\`)

Run: \`${v.command}\` on ${v.date} — host: ${v.machine.cpus} CPUs (${v.machine.cpuModel}), Linux ${v.machine.kernel}, load average at start ${v.loadavg}; guest: Debian's Linux ${v.vm.kernel} under \`qemu-system-x86_64 -accel tcg\` (no KVM), ${v.vm.cpus} vCPUs, ${v.vm.memMiB} MiB, booted in ${v.vm.bootS.toFixed(0)} s, ${v.vm.totalS.toFixed(0)} s in all.

**Emulated: read the ratios, not the figures.** qemu's TCG translates every guest instruction in
software, so absolute rates are a small fraction of the host's, and the translation does not
slow all code alike (memory accesses, atomics, helpers and JITed BPF cost differently than on a
real CPU): even the ratios are distorted, and are only an indication of how the paths compare.
The host's kernel has no nf_flow_table (nor VLAN or PPPoE), hence the VM.

Four identical router labs per topology (bench/vmlab.ts), one per configuration, taking turns in
each round (A B C D A B C D ...); "× kernel" and "× flowtable" are the medians (min–max) of the
per-round ratios to the kernel path and to the flowtable measured in the same round.

- **kernel path**: conntrack, nftables masquerade, routing.
- **nft flowtable**: the same plus \`flowtable ft { hook ingress; devices = { lowest LAN and WAN
  devices } }\` and \`meta l4proto { tcp, udp } flow add @ft\` in the forward chain: the kernel's
  software flow offloading, as OpenWrt's fw4 sets it up (the devices are the bridge port and the
  Ethernet device under the VLAN and PPPoE ones).
- **ebpf-offloader xdp-native / tc**: \`ebpf-offloader run <lan> <wan> --hook xdp-native|tc\`
  (br-lan and pppoe-wan named on the PPPoE lab; it attaches to lan1 and wan).

Packets/s: \`bench/pktgen.c\` (built on the host, run from the host's root in the VM), pinned
to vCPU 1, sends 60-byte IPv4/UDP frames to the router; the far end counts and drops them at
XDP (\`bench/sink.bpf.c\`); flows are offloaded by a warm-up before the rounds. With qdisc
bypass the whole path runs in the sender's softirq, so the rate is the inverse of generating +
forwarding + sinking one frame. The router has the client's neighbour entry, as after any ARP
exchange (the generator's raw frames never ask): without it the flowtable cannot resolve the
bridge port of the reply direction and its entry never matches frames arriving on lan1. "via
forward chain" is the share of forwarded packets the router's forward chain still saw (its
counter sits after \`flow add\`). TCP: the endpoints send and receive MTU-sized frames (tso,
gso, gro off; an XDP_PASS program gives their veths NAPI); "fwd-chain pkts/MB" shows which path
carried the stream (the flowtable takes a connection over in the kernel at its first
ESTABLISHED packet, the offloader once its daemon has reacted: more packets go the kernel path
first, and under TCG the daemon is slow). CPU time is not reported: under TCG it measures the emulator.

${v.labs.map((l) => renderLab(l, v)).join("\n")}`;
}
