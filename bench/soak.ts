// Soak: churn against the lab router for a bounded time, then report.
//
//   npm run soak [-- --minutes N] [--settle S] [--rss-bound-mib M]
//
// Connections open and close all the time (TCP transfers of 1-8 MiB, UDP exchanges to the
// service address and to the server), the service route flaps between wan and wan2 every few
// seconds and conntrack is flushed every half minute. Every 5 s it samples the daemon's resident
// memory, the flow map and conntrack. At the end the churn stops, the daemon settles, and the run
// passes when: RSS stayed under the bound, no flow is left in the map whose conntrack entry is
// gone (or that differs from it), and the daemon logged no error line. Exit 0 on pass, 1 on fail.
import type { Subprocess } from "bun";
import { parseArgs } from "node:util";
import { ADDR, Lab, removeStaleLabs } from "../test/lab.ts";
import { Offloader } from "../test/offloader.ts";
import { BUN, FIX, Output } from "../test/traffic.ts";
import { checkMap, conntrackCount, errorLines, rssKiB } from "../test/fixtures/faults.ts";

const { values: opts } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    settle: { type: "string", default: "10" },
    "rss-bound-mib": { type: "string", default: "192" },
  },
});
const MINUTES = Number(opts.minutes);
const SETTLE_S = Number(opts.settle);
const RSS_BOUND_KIB = Number(opts["rss-bound-mib"]) * 1024;
if (!(MINUTES > 0) || !(SETTLE_S >= 0) || !(RSS_BOUND_KIB > 0)) {
  console.error("soak: --minutes, --settle and --rss-bound-mib take positive numbers");
  process.exit(2);
}

interface Sample {
  at: number;
  rssKiB: number;
  mapEntries: number;
  conntrack: number;
  offloaded: number;
}

const counts = { tcp: 0, tcpFailed: 0, udp: 0, udpFailed: 0, routeFlaps: 0, flushes: 0 };
const children = new Set<Subprocess>();
let running = true;

removeStaleLabs("eosoak");
const lab = new Lab({ prefix: "eosoak", secondWan: true }).create();
let off: Offloader | null = null;

/** Kills everything the soak started and removes the lab, however it ends. */
const cleanUp = () => {
  for (const c of children) c.kill("SIGKILL");
  lab.destroy();
};
process.on("SIGINT", () => {
  cleanUp();
  process.exit(130);
});

/** Runs a client that prints "ready", waits for a line and exits; true when it exits 0. */
async function client(cmd: string[], timeoutMs: number): Promise<boolean> {
  const proc = lab.spawn(lab.client, cmd);
  children.add(proc);
  const guard = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    await new Output(proc.stdout).waitLine(/^ready/);
    proc.stdin.write("go\n");
    proc.stdin.flush();
    return (await proc.exited) === 0;
  } catch {
    return false;
  } finally {
    clearTimeout(guard);
    children.delete(proc);
  }
}

const rand = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo + 1));

async function tcpLoop(): Promise<void> {
  while (running) {
    const ok = await client([BUN, `${FIX}/tcp-send.ts`, ADDR.server4, "5201", String(rand(1, 8))], 30_000);
    counts.tcp++;
    // A flush resets some NATed connections, on the kernel path too: counted, not an error.
    if (!ok) counts.tcpFailed++;
    await Bun.sleep(rand(100, 1000));
  }
}

async function udpLoop(): Promise<void> {
  while (running) {
    const [host, port] = Math.random() < 0.5 ? [ADDR.service4, "7001"] : [ADDR.server4, "7003"];
    const ok = await client([BUN, `${FIX}/udp-send.ts`, host, port, String(rand(100, 2000)), "500"], 30_000);
    counts.udp++;
    if (!ok) counts.udpFailed++;
    await Bun.sleep(rand(50, 500));
  }
}

async function routeFlaps(): Promise<void> {
  let viaWan2 = false;
  while (running) {
    await Bun.sleep(rand(3000, 8000));
    viaWan2 = !viaWan2;
    const [gw, dev] = viaWan2 ? [ADDR.server2_4, "wan2"] : [ADDR.server4, "wan"];
    lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", gw, "dev", dev]);
    counts.routeFlaps++;
  }
}

async function flushes(): Promise<void> {
  while (running) {
    await Bun.sleep(30_000);
    if (!running) return;
    lab.exec(lab.router, ["conntrack", "-F"], { allowFail: true });
    counts.flushes++;
  }
}

function statusOffloaded(runDir: string): number {
  try {
    return (JSON.parse(lab.exec(lab.router, ["cat", `${runDir}/status.json`])) as { connections: { offloaded: number } }).connections.offloaded;
  } catch {
    return -1;
  }
}

const mib = (kib: number) => (kib / 1024).toFixed(1);
const pad = (s: string | number, n: number) => String(s).padStart(n);

try {
  for (const ns of [lab.server, lab.server2]) {
    children.add(lab.spawn(ns, [BUN, `${FIX}/udp-echo.ts`, "7001", ADDR.service4]));
  }
  children.add(lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7003"]));
  children.add(lab.spawn(lab.server, [BUN, `${FIX}/tcp-sink.ts`, "5201"]));
  off = new Offloader(lab, ["lan", "wan", "wan2"]);
  await off.waitFor(/running on/);
  const daemon = off;
  const start = Date.now();
  const samples: Sample[] = [];
  const sample = () => {
    const s: Sample = {
      at: (Date.now() - start) / 1000,
      rssKiB: rssKiB(daemon.pid) ?? -1,
      mapEntries: checkMap(lab, daemon.dirs.pinPath).flows.length,
      conntrack: conntrackCount(lab),
      offloaded: statusOffloaded(daemon.dirs.runDir),
    };
    samples.push(s);
    return s;
  };
  console.log(`soak: ${MINUTES} min of churn, then ${SETTLE_S} s to settle; daemon pid ${daemon.pid}, RSS bound ${mib(RSS_BOUND_KIB)} MiB`);
  console.log(`${pad("t (s)", 7)} ${pad("RSS MiB", 8)} ${pad("map", 6)} ${pad("conntrack", 9)} ${pad("offloaded", 9)}`);
  const print = (s: Sample) => console.log(`${pad(s.at.toFixed(0), 7)} ${pad(mib(s.rssKiB), 8)} ${pad(s.mapEntries, 6)} ${pad(s.conntrack, 9)} ${pad(s.offloaded, 9)}`);
  print(sample());
  const sampler = setInterval(() => print(sample()), 5000);
  const churn = [tcpLoop(), tcpLoop(), udpLoop(), udpLoop(), udpLoop(), routeFlaps(), flushes()];
  await Bun.sleep(MINUTES * 60_000);
  running = false;
  await Promise.all(churn);
  // Settle: the service back behind wan, every client done, the daemon's sweeps run.
  lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server4, "dev", "wan"]);
  await Bun.sleep(SETTLE_S * 1000);
  clearInterval(sampler);
  print(sample());

  const { flows, problems } = checkMap(lab, daemon.dirs.pinPath);
  const errors = errorLines(daemon.output);
  const peak = Math.max(...samples.map((s) => s.rssKiB));
  const exit = await daemon.stop();
  off = null;
  const checks = [
    { what: `daemon RSS peak ${mib(peak)} MiB (first ${mib(samples[0]!.rssKiB)}, last ${mib(samples.at(-1)!.rssKiB)})`, bound: `< ${mib(RSS_BOUND_KIB)} MiB`, ok: peak < RSS_BOUND_KIB },
    { what: `flows in the map without (or unlike) their conntrack entry: ${problems.length} of ${flows.length}`, bound: "0", ok: problems.length === 0 },
    { what: `error lines in the daemon's log: ${errors.length}`, bound: "0", ok: errors.length === 0 },
    { what: `daemon exit on SIGTERM: ${exit}`, bound: "0", ok: exit === 0 },
  ];
  console.log("\nchurn: " + Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", "));
  console.log(`handed back: ${(daemon.output.match(/handed back/g) ?? []).length}, offloaded: ${(daemon.output.match(/\boffloaded (tcp|udp)/g) ?? []).length} directions, re-routed: ${(daemon.output.match(/re-routed/g) ?? []).length}`);
  console.log(`\n${"check".padEnd(84)} ${"bound".padEnd(12)} result`);
  for (const c of checks) console.log(`${c.what.padEnd(84)} ${c.bound.padEnd(12)} ${c.ok ? "PASS" : "FAIL"}`);
  for (const p of problems.slice(0, 20)) console.log(`  ${p}`);
  for (const e of errors.slice(0, 20)) console.log(`  ${e}`);
  process.exitCode = checks.every((c) => c.ok) ? 0 : 1;
} finally {
  running = false;
  if (off) await Promise.race([off.stop(), Bun.sleep(5000)]);
  cleanUp();
}
