// The VM's side of `npm run bench:vm` (bench/vm.ts boots the VM and runs this in it): per topology,
// one lab per configuration (bench/vmlab.ts), then 64-byte UDP packets/s and TCP throughput in
// alternating rounds (A B C D A B C D ...). Progress goes to stderr; the result is one line on
// stdout, "EO-VM-BENCH-RESULT {json}", which the host reads from the console.
//
//   bun bench/vm-inside.ts '{"rounds":7,"seconds":1,"flows":1,"tcpRounds":3,"tcpSeconds":4,"topologies":["ethernet","pppoe"]}'
import { spawnTracked, runTracked } from "./benchlab.ts";
import { type ForwardingRound, VM_RESULT_MARK, type VmLabResult, type VmMeasurement, type VmTcpRun } from "./results.ts";
import { pps } from "./stats.ts";
import { VM_CONFIGS, VmBenchLab, type VmTopology } from "./vmlab.ts";

export interface VmBenchOptions {
  rounds: number;
  seconds: number;
  flows: number;
  tcpRounds: number;
  tcpSeconds: number;
  topologies: VmTopology[];
}

const WARM_TIMEOUT_MS = 60_000;
const log = (msg: string) => console.error(`bench:vm: ${msg}`);

async function warmUp(labs: VmBenchLab[], flows: number): Promise<string[]> {
  const notes: string[] = [];
  for (const l of labs) {
    const t0 = Date.now();
    do await l.send(flows, 0.3);
    while (l.offloads && l.offloadedFlows() < flows && Date.now() - t0 < WARM_TIMEOUT_MS);
    if (!l.offloads) continue;
    const n = l.offloadedFlows();
    const s = ((Date.now() - t0) / 1000).toFixed(1);
    notes.push(n < flows ? `${l.config}: only ${n} of ${flows} flow(s) offloaded after ${s} s` : `${l.config}: ${flows} flow(s) offloaded within ${s} s`);
  }
  return notes;
}

async function measurePps(l: VmBenchLab, flows: number, seconds: number): Promise<ForwardingRound> {
  const [sink0, fwd0] = [l.sinkCount(), l.forwardChainCount()];
  const s = await l.send(flows, seconds);
  await Bun.sleep(100); // frames still in the veth rings
  const [got, fwd] = [l.sinkCount() - sink0, l.forwardChainCount() - fwd0];
  return { pps: got / s.seconds, offered: s.sent / s.seconds, viaKernel: got ? fwd / got : 0 };
}

async function listening(l: VmBenchLab, port: number): Promise<void> {
  const end = Date.now() + 20_000;
  while (!l.exec(l.server, ["ss", "-Hltn", `sport = :${port}`]).trim()) {
    if (Date.now() > end) throw new Error(`iperf3 server in ${l.server} is not listening`);
    await Bun.sleep(100);
  }
}

async function iperf(l: VmBenchLab, seconds: number): Promise<VmTcpRun> {
  const srv = spawnTracked(["ip", "netns", "exec", l.server, "iperf3", "-s", "-1", "-p", "5201"]);
  try {
    await listening(l, 5201);
    const fwd0 = l.forwardChainCount();
    const out = await runTracked(
      ["ip", "netns", "exec", l.client, "iperf3", "-4", "-c", l.serverAddr, "-p", "5201", "-t", String(seconds), "-J", "--connect-timeout", "10000"],
      (seconds + 40) * 1000,
    );
    const r = JSON.parse(out) as { end?: { sum_sent?: { retransmits?: number }; sum_received?: { bytes: number; bits_per_second: number } }; error?: string };
    const rx = r.end?.sum_received;
    if (r.error || !rx) throw new Error(`iperf3: ${r.error ?? "no result"}`);
    return { bps: rx.bits_per_second, retransmits: r.end?.sum_sent?.retransmits ?? 0, fwdPerMB: (l.forwardChainCount() - fwd0) / (rx.bytes / 1e6) };
  } finally {
    srv.kill("SIGKILL");
    await srv.exited;
  }
}

async function benchTopology(topology: VmTopology, o: VmBenchOptions): Promise<VmLabResult> {
  const labs: VmBenchLab[] = [];
  const notes: string[] = [];
  const result: VmLabResult = { topology, pps: [], tcp: [], warmUp: [], notes };
  try {
    for (const c of VM_CONFIGS) labs.push(await new VmBenchLab(topology, c).create());
    log(`${topology}: labs ready (${VM_CONFIGS.join(", ")})`);
    result.warmUp = await warmUp(labs, o.flows);
    log(`${topology}: warm-up: ${result.warmUp.join("; ")}`);
    result.pps = labs.map((l) => ({ config: l.config, rounds: [] }));
    for (let r = 0; r < o.rounds; r++) {
      for (const [i, l] of labs.entries()) result.pps[i]!.rounds.push(await measurePps(l, o.flows, o.seconds));
      log(`${topology}: pps round ${r + 1}/${o.rounds}: ${labs.map((l, i) => `${l.config} ${pps(result.pps[i]!.rounds[r]!.pps)}`).join("  ")}`);
    }
    for (const l of labs) l.wireEndpoints();
    result.tcp = labs.map((l) => ({ config: l.config, runs: [] }));
    const failed = new Set<string>();
    for (let r = 0; r < o.tcpRounds; r++) {
      for (const [i, l] of labs.entries()) {
        if (failed.has(l.config)) continue; // one failure is the result
        try {
          const run = await iperf(l, o.tcpSeconds);
          result.tcp[i]!.runs.push(run);
          log(`${topology}: tcp round ${r + 1}/${o.tcpRounds}: ${l.config} ${(run.bps / 1e6).toFixed(0)} Mbit/s, ${run.fwdPerMB.toFixed(1)} fwd-chain pkts/MB`);
        } catch (e) {
          failed.add(l.config);
          notes.push(`${l.config}: TCP round ${r + 1} failed (later rounds skipped): ${(e as Error).message}`);
          log(notes.at(-1)!);
        }
      }
    }
    for (const l of labs) {
      const odd = l.daemonLog.split("\n").filter((x) => /^(warn|error):/.test(x));
      if (odd.length) notes.push(`${l.config}: ${odd.length} warning line(s), first: \`${odd[0]}\``);
      const invalid = l.invalidCount();
      if (invalid) notes.push(`${l.config}: the forward chain dropped ${invalid} packet(s) as ct state invalid`);
    }
  } finally {
    for (const l of labs) {
      const code = await l.destroy();
      if (code !== null && code !== 0) notes.push(`${l.config}: the offloader exited with ${code}`);
    }
  }
  return result;
}

if (import.meta.main) {
  const o = JSON.parse(Bun.argv[2] ?? "{}") as VmBenchOptions;
  const labs: VmLabResult[] = [];
  for (const t of o.topologies) labs.push(await benchTopology(t, o));
  const m: VmMeasurement = { rounds: o.rounds, seconds: o.seconds, flows: o.flows, tcpRounds: o.tcpRounds, tcpSeconds: o.tcpSeconds, labs };
  console.log(`${VM_RESULT_MARK}${JSON.stringify(m)}`);
  process.exit(0);
}
