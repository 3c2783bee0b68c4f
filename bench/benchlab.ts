// One lab per benchmarked configuration: the test lab (client -- router -- server, nftables
// masquerade) plus what a forwarding benchmark needs on top: a counting XDP_DROP sink on the
// server, a permanent neighbour entry for the server (the sink drops ARP too), the generator on
// the client, and on the router either nothing (kernel path), the offloader, or the static
// redirect ceiling.
import type { Subprocess } from "bun";
import { mkdirSync, rmSync } from "node:fs";
import { ADDR, Lab, sh } from "../test/lab.ts";
import { Offloader } from "../test/offloader.ts";

export const CONFIGS = ["kernel", "xdp-native", "tc", "xdp-generic", "ceiling"] as const;
export type ConfigName = (typeof CONFIGS)[number];

const ROOT = `${import.meta.dir}/..`;
const OUT = `${ROOT}/build/bench`;
const PKTGEN = `${OUT}/pktgen`;
const SINK_OBJ = `${OUT}/sink.bpf.o`;
const DISCARD_PORT = "9";

/** Every child process still running, so that an interrupted run can kill them all. */
const children = new Set<Subprocess<"ignore", "pipe", "pipe">>();

export function killChildren(): void {
  for (const c of children) c.kill("SIGKILL");
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
}

export interface Sent {
  sent: number;
  seconds: number;
}

/** 02:ab:... -> "0x02,0xab,..." for a C array initializer. */
const macBytes = (mac: string) => mac.split(":").map((b) => `0x${b}`).join(",");

export class BenchLab {
  readonly lab: Lab;
  private offloader: Offloader | null = null;
  private sinkMapId = 0;
  private lanMac = "";
  private ceilingObj = "";

  constructor(readonly config: ConfigName) {
    this.lab = new Lab({ prefix: "eobench" });
  }

  private link(ns: string, dev: string): { ifindex: number; address: string } {
    const [l] = JSON.parse(this.lab.exec(ns, ["ip", "-j", "link", "show", "dev", dev])) as { ifindex: number; address: string }[];
    if (!l) throw new Error(`${ns}: no ${dev}`);
    return l;
  }

  async create(): Promise<void> {
    const lab = this.lab.create();
    const server = this.link(lab.server, "eth0");
    this.lanMac = this.link(lab.router, "lan").address;
    lab.exec(lab.server, ["ip", "link", "set", "dev", "eth0", "xdpdrv", "obj", SINK_OBJ, "sec", "xdp"]);
    this.sinkMapId = this.findSinkMap();
    lab.exec(lab.router, ["ip", "neigh", "replace", ADDR.server4, "lladdr", server.address, "dev", "wan", "nud", "permanent"]);
    if (this.config === "ceiling") {
      const wan = this.link(lab.router, "wan");
      const obj = (this.ceilingObj = `${OUT}/ceiling-${lab.router}.bpf.o`);
      bpfCc(`${import.meta.dir}/ceiling.bpf.c`, obj, [
        `-DWAN_IFINDEX=${wan.ifindex}`,
        `-DSRC_MAC=${macBytes(wan.address)}`,
        `-DDST_MAC=${macBytes(server.address)}`,
      ]);
      lab.exec(lab.router, ["ip", "link", "set", "dev", "lan", "xdpdrv", "obj", obj, "sec", "xdp"]);
    } else if (this.config !== "kernel") {
      this.offloader = new Offloader(lab, ["lan", "wan", "--hook", this.config]);
      await this.offloader.waitFor(/running on/);
    }
  }

  /** The sink's counter map, found through the program attached to the server's eth0. */
  private findSinkMap(): number {
    const [l] = JSON.parse(this.lab.exec(this.lab.server, ["ip", "-j", "-d", "link", "show", "dev", "eth0"])) as {
      xdp?: { prog?: { id: number } };
    }[];
    const progId = l?.xdp?.prog?.id;
    if (!progId) throw new Error("sink: no XDP program on the server's eth0");
    const prog = JSON.parse(sh(["bpftool", "-j", "prog", "show", "id", String(progId)])) as { map_ids?: number[] };
    const id = prog.map_ids?.[0];
    if (!id) throw new Error(`sink: program ${progId} has no map`);
    return id;
  }

  /** Frames the server's sink has received so far (summed over CPUs). */
  sinkCount(): number {
    const dump = JSON.parse(sh(["bpftool", "-j", "map", "dump", "id", String(this.sinkMapId)])) as {
      formatted: { values: { value: number }[] };
    }[];
    return dump[0]?.formatted.values.reduce((s, v) => s + v.value, 0) ?? 0;
  }

  /** Packets the router's forward chain saw: near zero when the offloader carries the flows. */
  forwardChainCount(): number {
    return this.lab.forwardedPackets();
  }

  /** Runs the generator on the client, pinned to CPU 1, for `seconds`. */
  async send(flows: number, seconds: number): Promise<Sent> {
    const proc = Bun.spawn(
      ["ip", "netns", "exec", this.lab.client, "taskset", "-c", "1", PKTGEN, "eth0", this.lanMac, ADDR.client4, ADDR.server4, DISCARD_PORT, String(flows), String(seconds)],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    children.add(proc);
    // It stops by itself; the timer only guards against a hung send.
    const guard = setTimeout(() => proc.kill("SIGKILL"), seconds * 1000 + 5000);
    try {
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      if (code !== 0) throw new Error(`pktgen: exit ${code}: ${err.trim()}`);
      return JSON.parse(out) as Sent;
    } finally {
      clearTimeout(guard);
      children.delete(proc);
    }
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

  /** For an interrupted run: removes the lab now, killing whatever runs in it. */
  destroyNow(): void {
    this.lab.destroy();
    if (this.ceilingObj) rmSync(this.ceilingObj, { force: true });
  }

  /** Stops the offloader (returning its exit code, or null) and removes the lab. */
  async destroy(): Promise<number | null> {
    let code: number | null = null;
    try {
      if (this.offloader) code = await Promise.race([this.offloader.stop(), Bun.sleep(5000).then(() => -1)]);
    } finally {
      this.destroyNow();
    }
    return code;
  }
}
