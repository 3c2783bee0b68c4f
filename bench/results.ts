// The raw measurements of each benchmark section, kept in bench/results.json so that a section
// run alone (--only) updates its part and docs/BENCHMARKS.md is rendered again from all of them.
// Only the bench code writes this file; every number in the report and the chart comes from it.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { ConfigName } from "./benchlab.ts";
import type { Machine } from "./report.ts";
import type { VmConfig, VmTopology } from "./vmlab.ts";

export const RESULTS_PATH = `${import.meta.dir}/results.json`;

interface SectionMeta {
  date: string;
  command: string;
  machine: Machine;
  /** Load average when the section started: other work on the machine skews everything. */
  loadavg: string;
}

export interface ForwardingRound {
  pps: number;
  offered: number;
  /** Share of the forwarded packets that crossed the router's forward chain. */
  viaKernel: number;
}

export interface ForwardingResult extends SectionMeta {
  rounds: number;
  seconds: number;
  byFlows: { flows: number; configs: { config: ConfigName; rounds: ForwardingRound[] }[]; warmUp: string[] }[];
  notes: string[];
  profile: ProfileRow[];
}

/** BPF_PROG_TEST_RUN: a program's own average run time on one frame. */
export interface ProfileRow {
  program: string;
  what: string;
  ns: number[];
  retval: number;
}

export interface TcpRun {
  bps: number;
  /** CPU time of all CPUs over the run, by kind, in seconds; total: busy; all: busy + idle. */
  cpu: { user: number; system: number; softirq: number; total: number; all?: number };
  wallS: number;
  bytes: number;
  /** Packets the router's forward chain saw per MB received: ~0 when the offloader carries the stream. */
  fwdPerMB: number;
  retransmits: number;
  /** TCP segments the server dropped for a bad checksum. */
  csumErrors: number;
}

export interface TcpResult extends SectionMeta {
  rounds: number;
  seconds: number;
  /** ethtool features of the client's eth0 actually in effect, per mode and configuration. */
  features: Record<string, string>;
  runs: { mode: string; family: 4 | 6; config: ConfigName; runs: TcpRun[] }[];
  notes: string[];
}

export interface OffloadLatency {
  family: 4 | 6;
  /** Milliseconds from connect() returning to the flow entry's appearance; NaN never appeared. */
  ms: number[];
  missed: number;
}

export interface FillRun {
  flows: number;
  maxFlows: number;
  /** [seconds since the generator started, lan -> wan entries in the flow map] */
  samples: [number, number][];
  rateFlowsPerS: number;
  offloaded: number;
  pps: number;
  /** The daemon after the fill: idle, and while the generator keeps every flow alive. */
  /** VmRSS at start, after the fill and the paced traffic, after 3 s idle; VmHWM at the end. */
  rssMiB: { start: number; filled: number; idle: number; hwm: number };
  cpuPct: { traffic: number; idle: number };
  /** The daemon's CPU seconds from the generator's start to the end of the fill (absent in older results). */
  fillCpuS?: number;
  trafficPps: number;
  warnings: string[];
}

export interface LifecycleResult extends SectionMeta {
  latency: OffloadLatency[];
  fills: FillRun[];
  notes: string[];
}

export interface DroppingRound {
  /** Packets dropped per second, counted where the configuration drops them. */
  pps: number;
  offered: number;
}

export interface DroppingResult extends SectionMeta {
  rounds: number;
  seconds: number;
  configs: { config: string; rounds: DroppingRound[] }[];
  notes: string[];
  /** The drop entry and the XDP_DROP sink alone (BPF_PROG_TEST_RUN). */
  profile?: ProfileRow[];
}

/** One iperf3 run in the VM (TCG: the CPU time is emulation's, so none is kept). */
export interface VmTcpRun {
  bps: number;
  retransmits: number;
  /** Packets the router's forward chain saw per MB received. */
  fwdPerMB: number;
}

/** What the VM's side of `npm run bench:vm` measures, per topology (bench/vm-inside.ts). */
export interface VmLabResult {
  topology: VmTopology;
  pps: { config: VmConfig; rounds: ForwardingRound[] }[];
  tcp: { config: VmConfig; runs: VmTcpRun[] }[];
  warmUp: string[];
  notes: string[];
}

/** Starts the console line that carries the VM's VmMeasurement as JSON. */
export const VM_RESULT_MARK = "EO-VM-BENCH-RESULT ";

export interface VmMeasurement {
  rounds: number;
  seconds: number;
  flows: number;
  tcpRounds: number;
  tcpSeconds: number;
  labs: VmLabResult[];
}

export interface VmResult extends SectionMeta, VmMeasurement {
  vm: { kernel: string; cpus: number; memMiB: number; bootS: number; totalS: number };
}

export interface Results {
  forwarding?: ForwardingResult;
  dropping?: DroppingResult;
  tcp?: TcpResult;
  lifecycle?: LifecycleResult;
  vm?: VmResult;
}

export function loadResults(): Results {
  if (!existsSync(RESULTS_PATH)) return {};
  return JSON.parse(readFileSync(RESULTS_PATH, "utf8")) as Results;
}

export function saveResults(r: Results): void {
  writeFileSync(RESULTS_PATH, `${JSON.stringify(r, (_k, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 1)}\n`);
}

export function sectionMeta(command: string, machine: Machine): SectionMeta {
  return { date: new Date().toISOString(), command, machine, loadavg: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ") };
}
