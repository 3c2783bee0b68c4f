// The tables of docs/BENCHMARKS.md, one renderer per section, and the figures the goals are
// judged by. Everything is computed from bench/results.json.
import type { ConfigName } from "./benchlab.ts";
import type { ForwardingResult, LifecycleResult, TcpResult, TcpRun } from "./results.ts";
import { fmtSpread, median, percentile, pps, ratios, spread, table } from "./stats.ts";
import type { BarGroup } from "./svg.ts";

// ---- Forwarding ----

/** A spread (max / min) of per-round figures above this is called out as noisy. */
const NOISY = 1.3;

export interface FwdFigures {
  flows: number;
  config: ConfigName;
  pps: number;
  xKernel: ReturnType<typeof spread>;
  xCeiling: ReturnType<typeof spread>;
}

/** Below this share of its own median, the generator did not get its CPU: the machine stalled. */
const STALLED = 0.25;

type FlowRounds = ForwardingResult["byFlows"][number]["configs"];

/**
 * The rounds in which every configuration's generator sent at least STALLED of its median: a
 * slot in which the generator itself hardly ran (other work took its CPU) says nothing about the
 * router, and a ratio against it is meaningless. The whole round goes, for every configuration.
 */
export function keptRounds(configs: FlowRounds): number[] {
  const n = Math.min(...configs.map((c) => c.rounds.length));
  const meds = configs.map((c) => median(c.rounds.map((r) => r.offered)));
  return Array.from({ length: n }, (_, i) => i).filter((i) => configs.every((c, j) => (c.rounds[i]?.offered ?? 0) >= STALLED * (meds[j] ?? 0)));
}

function kept(configs: FlowRounds): FlowRounds {
  const keep = keptRounds(configs);
  return configs.map((c) => ({ config: c.config, rounds: keep.map((i) => c.rounds[i]).filter((r) => r !== undefined) }));
}

export function forwardingFigures(f: ForwardingResult): FwdFigures[] {
  return f.byFlows.flatMap(({ flows, configs: all }) => {
    const configs = kept(all);
    const of = (c: ConfigName) => configs.find((x) => x.config === c)?.rounds.map((r) => r.pps) ?? [];
    return configs.map(({ config, rounds }) => {
      const p = rounds.map((r) => r.pps);
      const k = of("kernel");
      const c = of("ceiling");
      return {
        flows, config, pps: median(p),
        xKernel: k.length === p.length ? spread(ratios(p, k)) : spread([NaN]),
        xCeiling: c.length === p.length ? spread(ratios(p, c)) : spread([NaN]),
      };
    });
  });
}

const CONFIG_TEXT: Record<ConfigName, string> = {
  kernel: "kernel (a)",
  "xdp-native": "xdp-native (b)",
  tc: "tc (c)",
  "xdp-generic": "xdp-generic (d)",
  ceiling: "ceiling (e)",
  drop: "drop (f)",
};

export function renderForwarding(f: ForwardingResult): string {
  const figs = forwardingFigures(f);
  const out: string[] = [];
  for (const { flows, configs: all, warmUp } of f.byFlows) {
    const configs = kept(all);
    const dropped = (all[0]?.rounds.length ?? 0) - (configs[0]?.rounds.length ?? 0);
    const rows = configs.map(({ config, rounds }) => {
      const g = figs.find((x) => x.flows === flows && x.config === config);
      const rate = spread(rounds.map((r) => r.pps));
      const via = Math.max(...rounds.map((r) => r.viaKernel * 100));
      return [
        CONFIG_TEXT[config], pps(rate.median), `${pps(rate.min)}–${pps(rate.max)}`,
        config === "kernel" ? "1" : fmtSpread(g?.xKernel ?? spread([NaN])),
        config === "ceiling" ? "1" : fmtSpread(g?.xCeiling ?? spread([NaN])),
        config === "drop" ? "-" : `${via.toFixed(via > 0 && via < 1 ? 2 : 0)}%`,
      ];
    });
    out.push(`### ${flows} flow${flows === 1 ? "" : "s"}\n`);
    if (dropped) out.push(`${dropped} of ${all[0]?.rounds.length} rounds excluded: in them some configuration's generator sent less than ${STALLED * 100}% of its median (it did not get its CPU; the machine stalled).\n`);
    out.push(table(["configuration", "median pps", "min–max pps", "× kernel (a)", "× ceiling (e)", "via forward chain (max)"], rows));
    out.push("");
    const noisy = figs.filter((g) => g.flows === flows && g.config !== "kernel" && g.xKernel.max / g.xKernel.min > NOISY).map((g) => `${g.config} (${g.xKernel.min.toFixed(2)}–${g.xKernel.max.toFixed(2)})`);
    if (noisy.length) out.push(`Noisy: the per-round ratio to the kernel path spread by more than ${Math.round((NOISY - 1) * 100)}% for ${noisy.join(", ")}.\n`);
    if (warmUp.length) out.push(`Warm-up: ${warmUp.join("; ")}.\n`);
  }
  if (f.profile.length) {
    out.push("### Per-packet cost of each program alone (BPF_PROG_TEST_RUN)\n");
    out.push(table(
      ["program", "case", "ns per packet: median (min–max of 6 groups)", "verdict"],
      f.profile.map((p) => [p.program, p.what, fmtSpread(spread(p.ns), 0), String(p.retval)]),
    ));
    out.push("");
  }
  return out.join("\n");
}

export function forwardingChart(f: ForwardingResult): BarGroup[] {
  const figs = forwardingFigures(f);
  return f.byFlows.map(({ flows, configs: all }) => ({
    title: `${flows} flow${flows === 1 ? "" : "s"}`,
    bars: all.map(({ config }) => {
      const g = figs.find((x) => x.flows === flows && x.config === config);
      const k = g?.xKernel.median ?? NaN;
      const c = g?.xCeiling.median ?? NaN;
      return {
        label: config,
        value: g?.pps ?? 0,
        note: `${pps(g?.pps ?? NaN)} pps  ${k.toFixed(2)}× kernel, ${c.toFixed(2)}× ceiling`,
        highlight: config === "xdp-native" || config === "tc" || config === "xdp-generic",
      };
    }),
  }));
}

// ---- TCP ----

export interface TcpFigures {
  mode: string;
  family: 4 | 6;
  config: ConfigName;
  gbps: number;
  cpuPerGB: number;
  xKernelGbps: number;
  xKernelCpu: number;
}

const perGB = (r: TcpRun) => r.cpu.total / (r.bytes / 1e9);

export function tcpFigures(t: TcpResult): TcpFigures[] {
  return t.runs.map((row) => {
    const k = t.runs.find((x) => x.mode === row.mode && x.family === row.family && x.config === "kernel");
    const gbps = median(row.runs.map((r) => r.bps / 1e9));
    const cpuPerGB = median(row.runs.map(perGB));
    return {
      mode: row.mode, family: row.family, config: row.config, gbps, cpuPerGB,
      xKernelGbps: gbps / median(k?.runs.map((r) => r.bps / 1e9) ?? []),
      xKernelCpu: cpuPerGB / median(k?.runs.map(perGB) ?? []),
    };
  });
}

export function renderTcp(t: TcpResult, cpus: number): string {
  const figs = tcpFigures(t);
  const out: string[] = [];
  for (const mode of [...new Set(t.runs.map((r) => r.mode))]) {
    const rows = t.runs.filter((r) => r.mode === mode).map((row) => {
      const g = figs.find((x) => x.mode === mode && x.family === row.family && x.config === row.config);
      const rs = row.runs;
      const gb = spread(rs.map((r) => r.bps / 1e9));
      const busy = median(rs.map((r) => (r.cpu.total / (r.cpu.all ?? r.wallS * cpus)) * 100));
      const sirq = median(rs.map((r) => r.cpu.softirq / (r.bytes / 1e9)));
      const n = rs.length;
      return [
        `IPv${row.family}`, row.config, n ? `${gb.median.toFixed(2)} (${gb.min.toFixed(2)}–${gb.max.toFixed(2)})` : "failed",
        row.config === "kernel" ? "1" : (g?.xKernelGbps ?? NaN).toFixed(2),
        n ? `${busy.toFixed(0)}%` : "-", n ? (g?.cpuPerGB ?? NaN).toFixed(2) : "-",
        row.config === "kernel" ? "1" : (g?.xKernelCpu ?? NaN).toFixed(2),
        n ? sirq.toFixed(2) : "-",
        n ? median(rs.map((r) => r.fwdPerMB)).toFixed(1) : "-",
        n ? String(median(rs.map((r) => r.retransmits))) : "-",
        `${n}/${t.rounds}`,
      ];
    });
    out.push(`### Endpoints: ${mode === "wire" ? "segmentation offloads off (tso, gso, gro off: MTU-sized frames, as on a wire)" : "veth defaults (checksum offload, TSO, GSO, GRO on)"}\n`);
    out.push(table(
      ["family", "configuration", "Gbit/s median (min–max)", "× kernel", "CPU busy (all CPUs)", "CPU-s per GB", "CPU/GB × kernel", "softirq s per GB", "fwd-chain pkts/MB", "retransmits", "runs ok"],
      rows,
    ));
    const noisy = t.runs.filter((r) => r.mode === mode && r.runs.length > 1).filter((r) => {
      const g = spread(r.runs.map((x) => x.bps));
      return g.max / g.min > NOISY;
    });
    if (noisy.length) out.push(`\nNoisy: throughput spread by more than ${Math.round((NOISY - 1) * 100)}% across rounds for ${noisy.map((r) => `IPv${r.family} ${r.config}`).join(", ")}.`);
    const feats = Object.entries(t.features).filter(([k]) => k.startsWith(`${mode} `)).map(([k, v]) => `${k.slice(mode.length + 1)}: ${v}`);
    out.push(`\nClient eth0 features in effect: ${feats.join("; ")}.\n`);
  }
  if (t.notes.length) out.push(`Failed runs and warnings:\n\n${t.notes.map((n) => `- ${n}`).join("\n")}\n`);
  return out.join("\n");
}

// ---- Lifecycle ----

export function latencyFigures(l: LifecycleResult): { family: 4 | 6; n: number; missed: number; p50: number; p99: number; max: number }[] {
  return l.latency.map((x) => ({
    family: x.family, n: x.ms.length, missed: x.missed,
    p50: percentile(x.ms, 50), p99: percentile(x.ms, 99), max: Math.max(...x.ms),
  }));
}

export function renderLifecycle(l: LifecycleResult): string {
  const out: string[] = [];
  out.push("### Time from ESTABLISHED to offloaded (TCP, one connection at a time)\n");
  out.push(table(
    ["family", "connections", "p50 ms", "p90 ms", "p99 ms", "max ms", "not offloaded within 1 s"],
    l.latency.map((x) => [
      `IPv${x.family}`, String(x.ms.length), percentile(x.ms, 50).toFixed(2), percentile(x.ms, 90).toFixed(2),
      percentile(x.ms, 99).toFixed(2), Math.max(...x.ms).toFixed(2), String(x.missed),
    ]),
  ));
  out.push("\n### New flows offloaded per second, and the daemon's cost\n");
  out.push(table(
    ["UDP flows", "--max-flows", "offloaded", "flows/s (10%→90% of the fill, or as far as it got)", "generator pps", "RSS at start MiB", "RSS filled MiB", "RSS idle MiB", "VmHWM MiB", "daemon CPU with traffic", "daemon CPU idle"],
    l.fills.map((f) => [
      String(f.flows), String(f.maxFlows), `${f.offloaded}${f.offloaded < f.flows ? ` (not all within ${"the fill"})` : ""}`, Math.round(f.rateFlowsPerS).toLocaleString("en"), pps(f.pps),
      f.rssMiB.start.toFixed(0), f.rssMiB.filled.toFixed(0), f.rssMiB.idle.toFixed(0), f.rssMiB.hwm.toFixed(0),
      `${f.cpuPct.traffic.toFixed(0)}% (${pps(f.trafficPps)} pps)`, `${f.cpuPct.idle.toFixed(0)}%`,
    ]),
  ));
  const warns = l.fills.flatMap((f) => f.warnings.map((w) => `${f.flows} flows: \`${w}\``));
  if (warns.length) out.push(`\nDaemon warnings during the fills:\n\n${warns.map((w) => `- ${w}`).join("\n")}`);
  out.push("");
  return out.join("\n");
}
