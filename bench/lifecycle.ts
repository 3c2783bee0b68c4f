// Lifecycle: how soon a connection is offloaded, how fast many new flows are offloaded, and what
// the daemon costs (RSS, CPU) with 1k and 65k flows.
//
// - Time to offload: TCP connections opened one at a time from the client (bench/ttoffload.ts,
//   IPv4 and IPv6), each timed from connect() to its flow entry appearing in the pinned map.
// - New flows per second: the generator sends UDP from N source ports (N distinct conntrack
//   connections) as fast as it can; the pinned flow map is counted every few hundred ms.
// - RSS and CPU of the daemon (its real PID, from its status file): after the fill, with the
//   generator keeping every flow alive at a paced rate, then idle.
import { readFileSync } from "node:fs";
import { ADDR } from "../test/lab.ts";
import { BpfMap } from "../src/bpf.ts";
import { LAYOUT } from "../src/abi.ts";
import { BenchLab, runTracked, spawnTracked } from "./benchlab.ts";
import { processCpuS, processMemMiB } from "./cpu.ts";
import type { FillRun, LifecycleResult, OffloadLatency } from "./results.ts";

const BUN = process.execPath;
const LISTEN_PORT = 5001;

export interface LifecycleOptions {
  connections: number;
  fills: { flows: number; maxFlows: number }[];
  fillSeconds: number;
}

export function lifecycleBoundS(o: LifecycleOptions): number {
  return 120 + o.connections * 2 * 0.1 + o.fills.length * (o.fillSeconds + 30);
}

function daemonPid(l: BenchLab): number {
  const d = l.daemon;
  if (!d) throw new Error("no offloader running");
  // `ip netns exec` may or may not stay in between: the daemon writes its own PID here.
  const s = JSON.parse(readFileSync(`${d.dirs.runDir}/status.json`, "utf8")) as { pid: number };
  return s.pid;
}

async function waitForStatus(l: BenchLab): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      daemonPid(l);
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error("the offloader wrote no status file");
}

async function measureLatency(o: LifecycleOptions): Promise<OffloadLatency[]> {
  const l = new BenchLab("xdp-native", { sink: false });
  const out: OffloadLatency[] = [];
  try {
    await l.create();
    const srv = spawnTracked(["ip", "netns", "exec", l.lab.server, BUN, `${import.meta.dir}/listen.ts`, String(LISTEN_PORT)]);
    const reader = srv.stdout.getReader();
    const first = await Promise.race([reader.read(), Bun.sleep(10_000).then(() => null)]);
    if (!first || first.done) throw new Error("the TCP listener did not start");
    const lan = l.link(l.lab.router, "lan").ifindex;
    const pin = l.daemon?.dirs.pinPath ?? "";
    for (const family of [4, 6] as const) {
      const [client, server] = family === 4 ? [ADDR.client4, ADDR.server4] : [ADDR.client6, ADDR.server6];
      const res = await runTracked(
        ["ip", "netns", "exec", l.lab.client, BUN, `${import.meta.dir}/ttoffload.ts`, pin, String(lan), String(family), client, server, String(LISTEN_PORT), String(o.connections)],
        o.connections * 1200 + 10_000,
      );
      const r = JSON.parse(res) as { ms: number[]; missed: number };
      out.push({ family, ms: r.ms, missed: r.missed });
      console.error(`lifecycle: time to offload, IPv${family}: ${r.ms.length} connections measured, ${r.missed} never offloaded within 1 s`);
    }
    srv.kill("SIGTERM");
  } finally {
    await l.destroy();
  }
  return out;
}

/** lan -> wan entries in the flow map (one per connection, whatever the reply direction does). */
function countLan(flows: BpfMap, lan: number): number {
  const d = flows.dump();
  const K = LAYOUT.flow_key.size;
  const view = new DataView(d.keys.buffer, d.keys.byteOffset, d.keys.byteLength);
  let n = 0;
  for (let i = 0; i < d.count; i++) if (view.getUint32(i * K, true) === lan) n++;
  return n;
}

/** Seconds at which the samples first reach `level` (linear between samples). */
function crossing(samples: [number, number][], level: number): number {
  for (let i = 0; i < samples.length; i++) {
    const [t, n] = samples[i] ?? [0, 0];
    if (n >= level) {
      const [tp, np] = samples[i - 1] ?? [t, n];
      return n === np ? t : tp + ((level - np) / (n - np)) * (t - tp);
    }
  }
  return NaN;
}

async function fill(flows: number, maxFlows: number, fillSeconds: number): Promise<FillRun> {
  // The daemon's default log level: at debug (the tests' choice) it writes two lines per flow.
  const l = new BenchLab("xdp-native", { offloaderArgs: ["--max-flows", String(maxFlows), "--log-level", "info"] });
  try {
    await l.create();
    await waitForStatus(l);
    const pid = daemonPid(l);
    const start = processMemMiB(pid).rss;
    const map = BpfMap.openPinned(`${l.daemon?.dirs.pinPath}/flows`);
    const lan = l.link(l.lab.router, "lan").ifindex;
    const sampleMs = flows > 10_000 ? 250 : 50;
    const samples: [number, number][] = [];
    const fillCpu0 = processCpuS(pid);
    const t0 = performance.now();
    let sending = true;
    const gen = l.startSend(flows, fillSeconds);
    const sent = gen.result.finally(() => (sending = false));
    while (sending) {
      const n = countLan(map, lan);
      samples.push([(performance.now() - t0) / 1000, n]);
      if (n >= flows) break;
      await Bun.sleep(sampleMs);
    }
    if (sending) gen.stop();
    const s = await sent;
    const fillCpuS = processCpuS(pid) - fillCpu0;
    const offloaded = countLan(map, lan);
    // From 10% to 90% of the flows, or to as far as the fill got before the generator stopped.
    const reached = Math.max(...samples.map(([, n]) => n));
    const [lo, hi] = [0.1 * flows, Math.min(0.9 * flows, reached)];
    const [a, b] = [crossing(samples, lo), crossing(samples, hi)];
    const rate = hi > lo ? (hi - lo) / (b - a) : NaN;
    console.error(`lifecycle: ${flows} flows: ${offloaded} offloaded; ${Math.round(lo)}->${Math.round(hi)} in ${(b - a).toFixed(2)} s = ${Math.round(rate)} flows/s`);
    // Keep every flow alive at a paced rate (each flow sees a packet every ~2 s), then idle.
    const trafficPps = Math.min(100_000, Math.max(2_000, flows / 2));
    const cpuA = processCpuS(pid);
    const tA = performance.now();
    await l.send(flows, 5, trafficPps);
    const traffic = (processCpuS(pid) - cpuA) / ((performance.now() - tA) / 1000);
    const filled = processMemMiB(pid);
    const cpuB = processCpuS(pid);
    const tB = performance.now();
    await Bun.sleep(3000);
    const idle = (processCpuS(pid) - cpuB) / ((performance.now() - tB) / 1000);
    const after = processMemMiB(pid);
    const warnings = (l.offloaderLog.match(/^(warn|error):.*$/gm) ?? []).slice(0, 5);
    return {
      flows, maxFlows, samples, rateFlowsPerS: rate, offloaded, pps: s.sent / s.seconds,
      rssMiB: { start, filled: filled.rss, idle: after.rss, hwm: after.hwm }, cpuPct: { traffic: traffic * 100, idle: idle * 100 }, fillCpuS, trafficPps, warnings,
    };
  } finally {
    await l.destroy();
  }
}

export async function runLifecycle(o: LifecycleOptions): Promise<Omit<LifecycleResult, "date" | "command" | "machine" | "loadavg">> {
  const latency = await measureLatency(o);
  const fills: FillRun[] = [];
  for (const f of o.fills) fills.push(await fill(f.flows, f.maxFlows, o.fillSeconds));
  return { latency, fills, notes: [] };
}
