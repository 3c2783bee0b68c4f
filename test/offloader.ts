// Runs the compiled ebpf-offloader binary inside a lab namespace and watches its log.
import type { Subprocess } from "bun";
import type { Lab } from "./lab.ts";

export const BIN = `${import.meta.dir}/../dist/ebpf-offloader`;

export class Offloader {
  private log = "";
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readonly reading: Promise<void>;

  constructor(lab: Lab, args: string[]) {
    this.proc = Bun.spawn(["ip", "netns", "exec", lab.router, BIN, "run", ...args], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.reading = this.collect(this.proc.stderr);
  }

  private async collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) this.log += dec.decode(chunk, { stream: true });
  }

  get output(): string {
    return this.log;
  }

  get pid(): number {
    return this.proc.pid;
  }

  /** Waits until the log matches, or throws with the log so far. */
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = this.log.match(re);
      if (m) return m;
      if (Date.now() > end || this.proc.exitCode !== null) {
        throw new Error(`offloader log never matched ${re} (exit ${this.proc.exitCode}):\n${this.log}`);
      }
      await Bun.sleep(20);
    }
  }

  kill(signal: NodeJS.Signals | number): void {
    this.proc.kill(signal);
  }

  /** SIGTERM and wait; returns the exit code. */
  async stop(): Promise<number> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const code = await this.proc.exited;
    await this.reading;
    return code;
  }
}
