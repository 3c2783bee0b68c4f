// Traffic for the end-to-end tests: TCP and UDP clients in the lab's client namespace that
// connect, wait until the offloader has taken their flow over, and then send on command.
import { afterAll, beforeAll, expect } from "bun:test";
import { Lab, type LabOptions, removeStaleLabs } from "./lab.ts";
import type { Offloader } from "./offloader.ts";

export const FIX = `${import.meta.dir}/fixtures`;
export const BUN = process.execPath;

/** Servers a lab's tests talk to: [namespace, command] pairs. */
export type Servers = (lab: Lab) => [string, string[]][];
export const tcpSink: Servers = (lab) => [[lab.server, [BUN, `${FIX}/tcp-sink.ts`, "5201"]]];
/** UDP echo servers at the server, one per port. */
export const udpEchoOn = (...ports: string[]): Servers => (lab) => ports.map((p) => [lab.server, [BUN, `${FIX}/udp-echo.ts`, p]]);
export const udpEcho: Servers = udpEchoOn("7001");

/**
 * A lab for the tests of one describe block: built (with its servers running, after `setup`)
 * before them, removed after them, also when they fail. `ready` receives it.
 */
export function labFixture(opts: LabOptions, servers: Servers[], ready: (lab: Lab) => void, setup?: (lab: Lab) => void): void {
  let lab: Lab | undefined;
  const procs: { kill(): void }[] = [];
  beforeAll(async () => {
    removeStaleLabs(opts.prefix ?? "eo");
    lab = new Lab(opts).create();
    setup?.(lab);
    for (const spec of servers) for (const [ns, cmd] of spec(lab)) procs.push(lab.spawn(ns, cmd));
    await Bun.sleep(300);
    ready(lab);
  });
  afterAll(() => {
    for (const p of procs) p.kill();
    lab?.destroy();
  });
}

export interface TcpResult {
  sent: string;
  reply: { sha256: string; bytes: number; peer: string };
}

export interface UdpResult {
  sent: number;
  received: number;
}

/** Reads a child's stdout: first up to a line matching a pattern, later the rest. */
export class Output {
  private readonly chunks: AsyncIterator<Uint8Array>;
  private readonly dec = new TextDecoder();
  private buf = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.chunks = stream[Symbol.asyncIterator]();
  }

  async waitLine(re: RegExp): Promise<string> {
    for (;;) {
      const line = this.buf.split("\n").find((l) => re.test(l));
      if (line) return line;
      const { value, done } = await this.chunks.next();
      if (done) throw new Error(`output ended before ${re}: ${this.buf}`);
      this.buf += this.dec.decode(value);
    }
  }

  /** The last line of the whole output. */
  async lastLine(): Promise<string> {
    for (;;) {
      const { value, done } = await this.chunks.next();
      if (done) return this.buf.trim().split("\n").pop() ?? "";
      this.buf += this.dec.decode(value);
    }
  }
}

/** Starts the TCP client, waits until its connection is offloaded in both directions. */
export async function startTcpClient(lab: Lab, off: Offloader, host: string, mib: number, lanPort = "lan") {
  const proc = lab.spawn(lab.client, [BUN, `${FIX}/tcp-send.ts`, host, "5201", String(mib)]);
  const out = new Output(proc.stdout);
  await out.waitLine(/^ready/);
  await off.waitFor(new RegExp(`offloaded tcp .*:5201 .*${lanPort} -> wan`), 5000);
  await off.waitFor(new RegExp(`offloaded tcp .*:5201 -> .* wan -> ${lanPort}`), 5000);
  const go = async (): Promise<TcpResult> => {
    proc.stdin.write("go\n");
    proc.stdin.flush();
    const last = await out.lastLine();
    expect(await proc.exited).toBe(0);
    return JSON.parse(last) as TcpResult;
  };
  return { go };
}


/** Starts the UDP client (RATE datagrams/s to PORT), waits until its flow is offloaded both ways. */
export async function startUdpClient(lab: Lab, off: Offloader, host: string, count: number, rate = 1000, port = 7001, lanPort = "lan") {
  const proc = lab.spawn(lab.client, [BUN, `${FIX}/udp-send.ts`, host, String(port), String(count), String(rate)]);
  const out = new Output(proc.stdout);
  const sport = (await out.waitLine(/^ready/)).split(" ")[1];
  await off.waitFor(new RegExp(`offloaded udp \\S+:${sport} -> \\S+:${port} .*${lanPort} -> wan`), 5000);
  await off.waitFor(new RegExp(`offloaded udp \\S+:${port} -> \\S+:${sport} .* wan\\d? -> ${lanPort}`), 5000);
  const go = async (): Promise<UdpResult> => {
    proc.stdin.write("go\n");
    proc.stdin.flush();
    const last = await out.lastLine();
    expect(await proc.exited).toBe(0);
    return JSON.parse(last) as UdpResult;
  };
  return { go };
}
