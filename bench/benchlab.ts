// One lab per benchmarked configuration: the test lab (client -- router -- server, nftables
// masquerade) plus what a forwarding benchmark needs on top: a counting XDP_DROP sink on the
// server (unless the lab carries TCP), a permanent neighbour entry for the server (the sink
// drops ARP too), the generator on the client, and on the router either nothing (kernel path),
// the offloader, the static redirect ceiling, or the counting XDP_DROP sink on lan ("drop").
import type { Subprocess } from "bun";
import { mkdirSync, rmSync } from "node:fs";
import { ADDR, Lab, sh } from "../test/lab.ts";
import { Offloader, type StateDirs } from "../test/offloader.ts";

export const CONFIGS = ["kernel", "xdp-native", "tc", "xdp-generic", "ceiling", "drop"] as const;
export type ConfigName = (typeof CONFIGS)[number];
export const OFFLOADER_CONFIGS: readonly ConfigName[] = ["xdp-native", "tc", "xdp-generic"];

export interface BenchLabOptions {
  /** The counting XDP_DROP sink on the server's eth0 (default true); TCP labs go without. */
  sink?: boolean;
  /** More arguments for the offloader (e.g. --max-flows). */
  offloaderArgs?: string[];
}

const ROOT = `${import.meta.dir}/..`;
const OUT = `${ROOT}/build/bench`;
export const PKTGEN = `${OUT}/pktgen`;
export const SINK_OBJ = `${OUT}/sink.bpf.o`;
/** XDP_PASS: gives a GRO-less veth endpoint the NAPI that XDP-redirected frames need. */
export const PASS_OBJ = `${OUT}/pass.bpf.o`;
export const DISCARD_PORT = "9";

/** Every child process still running, so that an interrupted run can kill them all. */
const children = new Set<Subprocess<"ignore", "pipe", "pipe">>();

/** Every lab not yet destroyed, for the same reason. */
const liveLabs = new Set<BenchLab>();

export function killChildren(): void {
  for (const c of children) c.kill("SIGKILL");
}

/** For an interrupted run: kills every child and removes every lab, now. */
export function destroyAllNow(): void {
  killChildren();
  for (const l of [...liveLabs]) l.destroyNow();
}

/** Spawns a child that destroyAllNow() kills; the caller awaits proc.exited. */
export function spawnTracked(cmd: string[]): Subprocess<"ignore", "pipe", "pipe"> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  children.add(proc);
  void proc.exited.then(() => children.delete(proc));
  return proc;
}

/**
 * Runs bench/pktgen.c in a namespace on eth0, pinned to CPU 1, with the generator's arguments
 * after the device; `guardMs` kills a hung send. `ip netns exec` and taskset exec it: one PID.
 */
export function runPktgen(ns: string, args: string[], guardMs: number): { stop: () => void; result: Promise<Sent> } {
  const proc = spawnTracked(["ip", "netns", "exec", ns, "taskset", "-c", "1", PKTGEN, "eth0", ...args]);
  // It stops by itself; the timer only guards against a hung send.
  const guard = setTimeout(() => proc.kill("SIGKILL"), guardMs);
  const result = (async () => {
    try {
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      if (code !== 0) throw new Error(`pktgen: exit ${code}: ${err.trim()}`);
      return JSON.parse(out) as Sent;
    } finally {
      clearTimeout(guard);
    }
  })();
  return { stop: () => proc.kill("SIGTERM"), result };
}

/** Runs a child to its end (killed after timeoutMs), returning stdout; throws on failure. */
export async function runTracked(cmd: string[], timeoutMs: number): Promise<string> {
  const proc = spawnTracked(cmd);
  const guard = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  try {
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`${cmd.slice(0, 6).join(" ")}: exit ${code}: ${err.trim().slice(0, 400)}`);
    return out;
  } finally {
    clearTimeout(guard);
  }
}

function bpfCc(src: string, out: string, defines: string[] = []): void {
  const multiarch = sh(["gcc", "-print-multiarch"]).trim();
  sh(["clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", `-I/usr/include/${multiarch}`, ...defines, "-c", src, "-o", out]);
}

/** Compiles the generator and the sink; the ceiling is compiled per lab (its MACs differ). */
export function buildTools(): void {
  mkdirSync(OUT, { recursive: true });
  sh(["cc", "-O2", "-Wall", "-Wextra", "-o", PKTGEN, `${import.meta.dir}/pktgen.c`]);
  bpfCc(`${import.meta.dir}/sink.bpf.c`, SINK_OBJ);
  bpfCc(`${import.meta.dir}/pass.bpf.c`, PASS_OBJ);
}

export interface Sent {
  sent: number;
  seconds: number;
}

/** The counter map of the sink program attached to `dev` (exec: a command in its namespace). */
export function sinkMapOf(exec: (cmd: string[]) => string, dev: string): number {
  const [l] = JSON.parse(exec(["ip", "-j", "-d", "link", "show", "dev", dev])) as { xdp?: { prog?: { id: number } } }[];
  const progId = l?.xdp?.prog?.id;
  if (!progId) throw new Error(`sink: no XDP program on ${dev}`);
  const prog = JSON.parse(sh(["bpftool", "-j", "prog", "show", "id", String(progId)])) as { map_ids?: number[] };
  const id = prog.map_ids?.[0];
  if (!id) throw new Error(`sink: program ${progId} has no map`);
  return id;
}

/** Frames a sink has counted so far (its per-CPU counter summed). */
export function sinkCount(mapId: number): number {
  const dump = JSON.parse(sh(["bpftool", "-j", "map", "dump", "id", String(mapId)])) as {
    formatted: { values: { value: number }[] };
  }[];
  return dump[0]?.formatted.values.reduce((s, v) => s + v.value, 0) ?? 0;
}

/** 02:ab:... -> "0x02,0xab,..." for a C array initializer. */
const macBytes = (mac: string) => mac.split(":").map((b) => `0x${b}`).join(",");

export class BenchLab {
  readonly lab: Lab;
  private offloader: Offloader | null = null;
  private sinkMapId = 0;
  private lanMac = "";
  private ceilingObj = "";
  private readonly sink: boolean;
  private readonly leftoverDirs: StateDirs[] = [];

  constructor(readonly config: ConfigName, private readonly opts: BenchLabOptions = {}) {
    this.lab = new Lab({ prefix: "eobench" });
    this.sink = opts.sink ?? true;
    liveLabs.add(this);
  }

  link(ns: string, dev: string): { ifindex: number; address: string } {
    const [l] = JSON.parse(this.lab.exec(ns, ["ip", "-j", "link", "show", "dev", dev])) as { ifindex: number; address: string }[];
    if (!l) throw new Error(`${ns}: no ${dev}`);
    return l;
  }

  async create(): Promise<void> {
    const lab = this.lab.create();
    const server = this.link(lab.server, "eth0");
    this.lanMac = this.link(lab.router, "lan").address;
    if (this.sink) {
      lab.exec(lab.server, ["ip", "link", "set", "dev", "eth0", "xdpdrv", "obj", SINK_OBJ, "sec", "xdp"]);
      this.sinkMapId = sinkMapOf((cmd) => lab.exec(lab.server, cmd), "eth0");
    }
    lab.exec(lab.router, ["ip", "neigh", "replace", ADDR.server4, "lladdr", server.address, "dev", "wan", "nud", "permanent"]);
    lab.exec(lab.router, ["ip", "-6", "neigh", "replace", ADDR.server6, "lladdr", server.address, "dev", "wan", "nud", "permanent"]);
    if (this.config === "drop") {
      // The second ceiling: the router's ingress drops (and counts) every frame at XDP.
      lab.exec(lab.router, ["ip", "link", "set", "dev", "lan", "xdpdrv", "obj", SINK_OBJ, "sec", "xdp"]);
      this.sinkMapId = sinkMapOf((cmd) => lab.exec(lab.router, cmd), "lan");
    } else if (this.config === "ceiling") {
      const wan = this.link(lab.router, "wan");
      const obj = (this.ceilingObj = `${OUT}/ceiling-${lab.router}.bpf.o`);
      bpfCc(`${import.meta.dir}/ceiling.bpf.c`, obj, [
        `-DWAN_IFINDEX=${wan.ifindex}`,
        `-DSRC_MAC=${macBytes(wan.address)}`,
        `-DDST_MAC=${macBytes(server.address)}`,
      ]);
      lab.exec(lab.router, ["ip", "link", "set", "dev", "lan", "xdpdrv", "obj", obj, "sec", "xdp"]);
    } else if (this.config !== "kernel") {
      await this.startOffloader();
    }
  }

  /** Starts the offloader on lan and wan (after stopping one that runs). */
  async startOffloader(extra: string[] = []): Promise<void> {
    await this.stopOffloader();
    this.offloader = new Offloader(this.lab, ["lan", "wan", "--hook", this.config, ...(this.opts.offloaderArgs ?? []), ...extra]);
    await this.offloader.waitFor(/running on/);
  }

  /** Stops the offloader, if one runs; returns its exit code (-1: it did not stop in 5 s). */
  async stopOffloader(): Promise<number | null> {
    const o = this.offloader;
    if (!o) return null;
    this.offloader = null;
    const code = await Promise.race([o.stop(), Bun.sleep(5000).then(() => -1)]);
    if (code === -1) this.leftoverDirs.push(o.dirs); // destroyNow() unmounts it once the lab's processes are gone
    return code;
  }

  /** Frames the sink (the server's, or the router's for "drop") has received so far (summed over CPUs). */
  sinkCount(): number {
    if (!this.sinkMapId) throw new Error(`${this.config}: this lab has no sink`);
    return sinkCount(this.sinkMapId);
  }

  /** Packets the router's forward chain saw: near zero when the offloader carries the flows. */
  forwardChainCount(): number {
    return this.lab.forwardedPackets();
  }

  /**
   * Runs the generator on the client, pinned to CPU 1, for `seconds` (pps > 0: paced). More than
   * 50000 flows use the client's next addresses too (see pktgen.c): they are added here.
   */
  async send(flows: number, seconds: number, pps = 0, dst: string = ADDR.server4): Promise<Sent> {
    return await this.startSend(flows, seconds, pps, dst).result;
  }

  /** send(), with the generator's process to stop it early (`ip netns exec` and taskset exec it: one PID). */
  startSend(flows: number, seconds: number, pps = 0, dst: string = ADDR.server4): { stop: () => void; result: Promise<Sent> } {
    this.addClientAddresses(Math.ceil(flows / 50_000));
    return runPktgen(this.lab.client, [this.lanMac, ADDR.client4, dst, DISCARD_PORT, String(flows), String(seconds), String(pps)], seconds * 1000 + 5000);
  }

  private clientAddresses = 1;

  private addClientAddresses(n: number): void {
    const base = ADDR.client4.split(".").map(Number);
    for (; this.clientAddresses < n; this.clientAddresses++) {
      const a = `${base.slice(0, 3).join(".")}.${(base[3] ?? 0) + this.clientAddresses}`;
      this.lab.exec(this.lab.client, ["ip", "addr", "add", `${a}/24`, "dev", "eth0"]);
    }
  }

  /** The running offloader (its pinned maps, run directory and log), or null. */
  get daemon(): Offloader | null {
    return this.offloader;
  }

  /** Source ports of the client flows the offloader reported offloaded (lan -> wan). */
  offloadedPorts(): Set<number> {
    const re = new RegExp(`offloaded udp ${ADDR.client4.replaceAll(".", "\\.")}:(\\d+) -> ${ADDR.server4.replaceAll(".", "\\.")}:${DISCARD_PORT} .*lan -> wan`, "g");
    return new Set([...(this.offloader?.output ?? "").matchAll(re)].map((m) => Number(m[1])));
  }

  get offloaderLog(): string {
    return this.offloader?.output ?? "";
  }

  get hasOffloader(): boolean {
    return this.offloader !== null;
  }

  /** For an interrupted run: removes the lab now, killing whatever runs in it, and its bpffs mount. */
  destroyNow(): void {
    liveLabs.delete(this);
    this.lab.destroy();
    for (const d of [...this.leftoverDirs.splice(0), ...(this.offloader ? [this.offloader.dirs] : [])]) d.remove();
    if (this.ceilingObj) rmSync(this.ceilingObj, { force: true });
  }

  /** Stops the offloader (returning its exit code, or null) and removes the lab. */
  async destroy(): Promise<number | null> {
    let code: number | null = null;
    try {
      code = await this.stopOffloader();
    } finally {
      this.destroyNow();
    }
    return code;
  }
}
