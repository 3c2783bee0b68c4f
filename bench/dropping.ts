// Dropping: 64-byte UDP packets/s that the router drops, by nftables in the forward chain, by
// nftables in the input chain, by the offloader's dropper (learnt from the forward chain's drop,
// `--drop learn`) and by the XDP_DROP ceiling (the counting sink on lan), side by side in rounds
// as in forwarding.ts. The generator floods one 5-tuple, as a scan or flood of a closed port does.
import { ADDR, loadRuleset, nftCounter } from "../test/lab.ts";
import { BIN } from "../test/offloader.ts";
import { BenchLab, type ConfigName } from "./benchlab.ts";
import { profilePrograms } from "./profile.ts";
import type { DroppingResult, DroppingRound } from "./results.ts";
import { pps } from "./stats.ts";

export const DROP_CONFIGS = ["nft-forward", "nft-input", "xdp-dropper", "xdp-drop"] as const;
export type DropConfig = (typeof DROP_CONFIGS)[number];

export interface DroppingOptions {
  rounds: number;
  seconds: number;
}

const LEARN_TIMEOUT_MS = 30_000;

/** Drops in the forward chain or (for the router's own address) the input chain, counted. */
const RULES = (hook: "forward" | "input") => `
table inet lab {
  counter dropped {}
  chain drop_${hook} {
    type filter hook ${hook} priority filter - 1; policy accept;
    iifname "lan" udp dport 9 counter name "dropped" drop
  }
}
`;

export function droppingBoundS(o: DroppingOptions): number {
  return 60 + LEARN_TIMEOUT_MS / 1000 + DROP_CONFIGS.length * o.rounds * (o.seconds + 1.5);
}

interface DropLab {
  config: DropConfig;
  lab: BenchLab;
  dst: string;
  /** Packets dropped so far, counted where the configuration drops them. */
  dropped(): number;
}

function labConfig(c: DropConfig): ConfigName {
  return c === "xdp-drop" ? "drop" : c === "xdp-dropper" ? "xdp-native" : "kernel";
}

async function create(config: DropConfig): Promise<DropLab> {
  // The dropper's entries must outlive the run: no expiry by age in the middle of a round.
  const lab = new BenchLab(labConfig(config), { offloaderArgs: ["--drop", "learn", "--drop-timeout", "3600"] });
  await lab.create();
  const router = lab.lab.router;
  if (config !== "xdp-drop") loadRuleset(router, RULES(config === "nft-input" ? "input" : "forward"));
  const dst = config === "nft-input" ? ADDR.routerLan4 : ADDR.server4;
  const dropped = (): number => {
    if (config === "xdp-drop") return lab.sinkCount();
    if (config !== "xdp-dropper") return nftCounter(router, "dropped");
    const s = JSON.parse(lab.lab.exec(router, [BIN, "status", "--json", "--run-dir", lab.daemon!.dirs.runDir])) as {
      interfaces: Record<string, { dropPackets: number }>;
    };
    return s.interfaces.lan?.dropPackets ?? NaN;
  };
  return { config, lab, dst, dropped };
}

async function measure(l: DropLab, seconds: number): Promise<DroppingRound> {
  const d0 = l.dropped();
  const s = await l.lab.send(1, seconds, 0, l.dst);
  await Bun.sleep(50); // frames still in the veth rings
  return { pps: (l.dropped() - d0) / s.seconds, offered: s.sent / s.seconds };
}

export async function runDropping(o: DroppingOptions): Promise<Omit<DroppingResult, "date" | "command" | "machine" | "loadavg">> {
  const labs: DropLab[] = [];
  const notes: string[] = [];
  try {
    for (const c of DROP_CONFIGS) labs.push(await create(c));
    // The dropper learns the flow from the forward chain's first drops.
    const dropper = labs.find((l) => l.config === "xdp-dropper")!;
    const t0 = Date.now();
    while (!/dropping at XDP: udp /.test(dropper.lab.offloaderLog) && Date.now() - t0 < LEARN_TIMEOUT_MS) await dropper.lab.send(1, 0.2);
    if (!/dropping at XDP: udp /.test(dropper.lab.offloaderLog)) notes.push("the dropper learnt nothing during the warm-up");
    else notes.push(`the dropper learnt the flow within ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    console.error(`dropping: labs ready: ${DROP_CONFIGS.join(", ")}; ${o.rounds} rounds of ${o.seconds} s`);
    const rounds = new Map<DropConfig, DroppingRound[]>(DROP_CONFIGS.map((c) => [c, []]));
    for (let r = 0; r < o.rounds; r++) {
      for (const l of labs) rounds.get(l.config)?.push(await measure(l, o.seconds));
      console.error(`dropping: round ${r + 1}/${o.rounds}: ${labs.map((l) => `${l.config} ${pps(rounds.get(l.config)?.[r]?.pps ?? NaN)}`).join("  ")}`);
    }
    const odd = dropper.lab.offloaderLog.split("\n").filter((x) => /^(warn|error):|removed \d+ drop/.test(x));
    if (odd.length) notes.push(`xdp-dropper: ${odd.length} warning/flush line(s), first: \`${odd[0]}\``);
    const configs = DROP_CONFIGS.map((config) => ({ config, rounds: rounds.get(config) ?? [] }));
    for (const l of labs.splice(0)) {
      const code = await l.lab.destroy();
      if (code !== null && code !== 0) notes.push(`${l.config}: the offloader exited with ${code}`);
    }
    console.error("dropping: BPF_PROG_TEST_RUN profile");
    const profile = (await profilePrograms()).filter((p) => p.what.startsWith("drop entry") || p.program === "sink");
    return { rounds: o.rounds, seconds: o.seconds, configs, notes, profile };
  } finally {
    for (const l of labs) await l.lab.destroy();
  }
}
