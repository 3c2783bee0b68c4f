// TCP throughput: one iperf3 stream client -> server through the router, IPv4 and IPv6, the
// kernel path against the offloader (xdp-native, tc), with the endpoints' segmentation offloads
// off (MTU-sized frames, as on a wire) and on, plus the CPU time the whole machine spent.
//
// Every namespace shares the machine's CPUs, so the router's own CPU time cannot be read apart
// from the endpoints'. What is measured: /proc/stat deltas over each run (user, system, softirq
// of all CPUs), reported as CPU-seconds per GB moved. The endpoints do the same work per byte in
// every configuration, so the differences between configurations are the router's.
import { ADDR } from "../test/lab.ts";
import { BenchLab, PASS_OBJ, type ConfigName, runTracked, spawnTracked } from "./benchlab.ts";
import { cpuDelta, machineCpu } from "./cpu.ts";
import type { TcpResult, TcpRun } from "./results.ts";

export const TCP_CONFIGS: ConfigName[] = ["kernel", "xdp-native", "tc"];

/** Endpoint settings: ethtool -K arguments and whether eth0 needs the XDP_PASS program for NAPI. */
export const TCP_MODES = {
  // Frames as on a wire: the sender segments nothing in bulk, the receiver merges nothing.
  wire: { ethtool: ["tx", "off", "tso", "off", "gso", "off", "gro", "off"], napiXdp: true },
  // The veth defaults: checksum offload, TSO, GSO and GRO on (GSO/partial-checksum packets).
  offloads: { ethtool: ["tx", "on", "tso", "on", "gso", "on", "gro", "on"], napiXdp: false },
} as const;
export type TcpMode = keyof typeof TCP_MODES;

export interface TcpOptions {
  rounds: number;
  seconds: number;
  modes: TcpMode[];
  families: (4 | 6)[];
}

export function tcpBoundS(o: TcpOptions): number {
  return 60 + o.rounds * o.modes.length * o.families.length * TCP_CONFIGS.length * (o.seconds + 12);
}

function setMode(l: BenchLab, mode: TcpMode): void {
  const m = TCP_MODES[mode];
  for (const ns of [l.lab.client, l.lab.server]) {
    l.lab.exec(ns, ["ethtool", "-K", "eth0", ...m.ethtool]);
    l.lab.exec(ns, ["ip", "link", "set", "dev", "eth0", "xdpdrv", ...(m.napiXdp ? ["obj", PASS_OBJ, "sec", "xdp"] : ["off"])]);
  }
}

/** The client's offload features in effect (the router's XDP program strips some from its peer). */
function features(l: BenchLab): string {
  const out = l.lab.exec(l.lab.client, ["ethtool", "-k", "eth0"]);
  const get = (name: string) => new RegExp(`^${name}: (\\w+)`, "m").exec(out)?.[1] ?? "?";
  return `tx-csum ${get("tx-checksumming")}, tso ${get("tcp-segmentation-offload")}, gso ${get("generic-segmentation-offload")}, gro ${get("generic-receive-offload")}`;
}

interface Iperf3Json {
  end?: {
    sum_sent?: { bytes: number; seconds: number; retransmits?: number };
    sum_received?: { bytes: number; seconds: number; bits_per_second: number };
  };
  error?: string;
}

/** TCP segments the server's stack dropped for a bad checksum (its /proc/net/snmp). */
function csumErrors(l: BenchLab): number {
  const snmp = l.lab.exec(l.lab.server, ["cat", "/proc/net/snmp"]).split("\n").filter((x) => x.startsWith("Tcp:"));
  const [head, vals] = snmp.map((x) => x.split(/\s+/));
  const i = head?.indexOf("InCsumErrors") ?? -1;
  return i < 0 ? 0 : Number(vals?.[i] ?? 0);
}

async function iperf(l: BenchLab, family: 4 | 6, seconds: number): Promise<TcpRun> {
  const server = family === 4 ? ADDR.server4 : ADDR.server6;
  // A server per run: one that a failed run left busy cannot spoil the next.
  const srv = spawnTracked(["ip", "netns", "exec", l.lab.server, "iperf3", "-s", "-1"]);
  await Bun.sleep(200);
  const [cpu0, fwd0, csum0, t0] = [machineCpu(), l.forwardChainCount(), csumErrors(l), performance.now()];
  let out: string;
  try {
    out = await runTracked(
      ["ip", "netns", "exec", l.lab.client, "iperf3", `-${family}`, "-c", server, "-t", String(seconds), "-J", "--connect-timeout", "3000"],
      (seconds + 6) * 1000,
    );
  } catch (e) {
    const bad = csumErrors(l) - csum0;
    throw new Error(`${(e as Error).message.replace(/: $/, "")}${bad ? `; the server dropped ${bad} TCP segment(s) with bad checksums` : ""}`);
  } finally {
    srv.kill("SIGKILL");
  }
  const [cpu1, fwd1, csum1, t1] = [machineCpu(), l.forwardChainCount(), csumErrors(l), performance.now()];
  const r = JSON.parse(out) as Iperf3Json;
  const rx = r.end?.sum_received;
  if (r.error || !rx) throw new Error(`iperf3: ${r.error ?? "no result"}`);
  const d = cpuDelta(cpu0, cpu1);
  const busy = d.total - d.idle;
  return {
    bps: rx.bits_per_second,
    cpu: { user: d.user, system: d.system, softirq: d.softirq, total: busy, all: d.total },
    wallS: (t1 - t0) / 1000,
    bytes: rx.bytes,
    fwdPerMB: (fwd1 - fwd0) / (rx.bytes / 1e6),
    retransmits: r.end?.sum_sent?.retransmits ?? 0,
    csumErrors: csum1 - csum0,
  };
}

export async function runTcp(o: TcpOptions): Promise<Omit<TcpResult, "date" | "command" | "machine" | "loadavg">> {
  const labs: BenchLab[] = [];
  const runs: TcpResult["runs"] = [];
  const featureNotes: Record<string, string> = {};
  const notes: string[] = [];
  const failed = new Set<string>();
  try {
    for (const c of TCP_CONFIGS) {
      const l = new BenchLab(c, { sink: false });
      labs.push(l);
      await l.create();
    }
    console.error(`tcp: labs ready: ${TCP_CONFIGS.join(", ")}; ${o.rounds} rounds of ${o.seconds} s per mode, family and configuration`);
    for (const mode of o.modes) {
      for (const l of labs) {
        setMode(l, mode);
        featureNotes[`${mode} ${l.config}`] = features(l);
      }
      for (let r = 0; r < o.rounds; r++) {
        for (const family of o.families) {
          for (const l of labs) {
            let row = runs.find((x) => x.mode === mode && x.family === family && x.config === l.config);
            if (!row) runs.push((row = { mode, family, config: l.config, runs: [] }));
            const key = `${mode} IPv${family} ${l.config}`;
            if (failed.has(key)) continue; // one failure is the result; more would only cost time
            try {
              const run = await iperf(l, family, o.seconds);
              row.runs.push(run);
              console.error(`tcp: ${mode} IPv${family} ${l.config} round ${r + 1}: ${(run.bps / 1e9).toFixed(2)} Gbit/s, ${((run.cpu.total / (run.cpu.all ?? NaN)) * 100).toFixed(0)}% CPU`);
            } catch (e) {
              failed.add(key);
              notes.push(`${key} round ${r + 1} (later rounds skipped): ${(e as Error).message}`);
              console.error(`tcp: ${notes.at(-1)}`);
            }
          }
        }
      }
    }
    for (const l of labs) {
      const odd = l.offloaderLog.split("\n").filter((x) => /^(warn|error):/.test(x));
      if (odd.length) notes.push(`${l.config}: ${odd.length} warning line(s), first: \`${odd[0]}\``);
    }
  } finally {
    for (const l of labs) {
      const code = await l.destroy();
      if (code !== null && code !== 0) notes.push(`${l.config}: the offloader exited with ${code}`);
    }
  }
  return { rounds: o.rounds, seconds: o.seconds, features: featureNotes, runs, notes };
}
