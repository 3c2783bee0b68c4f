// Forwarding: 64-byte UDP packets/s through the lab's NAT router, the kernel path against the
// offloader and two ceilings (a static XDP redirect, and XDP_DROP at the router's ingress), side
// by side in one run.
//
// The machine is noisy, so every configuration gets its own identical lab and the configurations
// take turns in short rounds (A B C A B C ...). Reported: the median rate of each configuration
// and the median, min and max of its per-round ratios to the kernel path and to the static
// redirect ceiling measured in the same round.
import { BenchLab, type ConfigName } from "./benchlab.ts";
import { profilePrograms } from "./profile.ts";
import type { ForwardingResult, ForwardingRound } from "./results.ts";
import { pps } from "./stats.ts";

export interface ForwardingOptions {
  rounds: number;
  seconds: number;
  flowCounts: number[];
  configs: ConfigName[];
}

const WARM_TIMEOUT_MS = 30_000;

/** Seconds the section may take at most (for the run's overall bound). */
export function forwardingBoundS(o: ForwardingOptions): number {
  return 60 + o.flowCounts.length * o.configs.length * (WARM_TIMEOUT_MS / 1000 + o.rounds * (o.seconds + 1.5));
}

/**
 * Sends to every lab (conntrack then knows every flow), and keeps sending to each offloader's lab
 * until it has reported all flows offloaded: live traffic, as on a router, also lets it pick up
 * flows it missed. Returns a note per offloader: how long that took.
 */
async function warmUp(labs: BenchLab[], flows: number): Promise<string[]> {
  const notes: string[] = [];
  for (const l of labs) {
    const t0 = Date.now();
    do await l.send(flows, 0.2);
    while (l.hasOffloader && l.offloadedPorts().size < flows && Date.now() - t0 < WARM_TIMEOUT_MS);
    if (!l.hasOffloader) continue;
    const n = l.offloadedPorts().size;
    const s = ((Date.now() - t0) / 1000).toFixed(1);
    notes.push(n < flows ? `${l.config}: only ${n} of ${flows} flows offloaded after ${s} s` : `${l.config}: all ${flows} offloaded within ${s} s`);
    if (n < flows) console.error(`warning: ${notes.at(-1)}`);
  }
  return notes;
}

async function measure(l: BenchLab, flows: number, seconds: number): Promise<ForwardingRound> {
  const [sink0, fwd0] = [l.sinkCount(), l.forwardChainCount()];
  const s = await l.send(flows, seconds);
  await Bun.sleep(50); // frames still in the veth rings
  const [got, fwd] = [l.sinkCount() - sink0, l.forwardChainCount() - fwd0];
  return { pps: got / s.seconds, offered: s.sent / s.seconds, viaKernel: got ? fwd / got : 0 };
}

export async function runForwarding(o: ForwardingOptions): Promise<Omit<ForwardingResult, "date" | "command" | "machine" | "loadavg">> {
  const labs: BenchLab[] = [];
  const byFlows: ForwardingResult["byFlows"] = [];
  const notes: string[] = [];
  try {
    for (const c of o.configs) {
      const l = new BenchLab(c);
      labs.push(l);
      await l.create();
    }
    console.error(`forwarding: labs ready: ${o.configs.join(", ")}; ${o.rounds} rounds of ${o.seconds} s per configuration and flow count`);
    for (const flows of o.flowCounts) {
      const warm = await warmUp(labs, flows);
      const rounds = new Map<ConfigName, ForwardingRound[]>(o.configs.map((c) => [c, []]));
      for (let r = 0; r < o.rounds; r++) {
        for (const l of labs) rounds.get(l.config)?.push(await measure(l, flows, o.seconds));
        const line = labs.map((l) => `${l.config} ${pps(rounds.get(l.config)?.[r]?.pps ?? NaN)}`).join("  ");
        console.error(`forwarding: ${flows} flow(s), round ${r + 1}/${o.rounds}: ${line}`);
      }
      byFlows.push({ flows, configs: o.configs.map((config) => ({ config, rounds: rounds.get(config) ?? [] })), warmUp: warm });
    }
    // Anything the offloaders complained about, or flows they gave back mid-run, may skew their rates.
    for (const l of labs) {
      const odd = l.offloaderLog.split("\n").filter((x) => /^(warn|error):|handed back/.test(x));
      if (odd.length) notes.push(`${l.config}: ${odd.length} warning/hand-back line(s), first: \`${odd[0]}\``);
    }
  } finally {
    for (const l of labs) {
      const code = await l.destroy();
      if (code !== null && code !== 0) notes.push(`${l.config}: the offloader exited with ${code}`);
    }
  }
  for (const n of notes) console.error(`forwarding: note: ${n}`);
  console.error("forwarding: BPF_PROG_TEST_RUN profile");
  const profile = await profilePrograms();
  return { rounds: o.rounds, seconds: o.seconds, byFlows, notes, profile };
}
