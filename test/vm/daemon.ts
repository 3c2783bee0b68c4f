// The compiled daemon in the VM lab's router namespace, its log collected (test/offloader.ts does
// the same for test/lab.ts). EO_BIN picks another binary than dist/ebpf-offloader.
import type { Subprocess } from "bun";
import { StateDirs } from "../offloader.ts";

export const BIN = process.env.EO_BIN || `${import.meta.dir}/../../dist/ebpf-offloader`;

export class Daemon {
  private log = "";
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readonly reading: Promise<void>;
  readonly dirs = new StateDirs();

  constructor(netns: string, args: string[]) {
    this.proc = Bun.spawn(
      ["ip", "netns", "exec", netns, BIN, "run", ...args, "--pin-path", this.dirs.pinPath, "--run-dir", this.dirs.runDir],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
    const stderr = this.proc.stderr;
    this.reading = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of stderr) this.log += dec.decode(chunk, { stream: true });
    })();
  }

  get output(): string {
    return this.log;
  }

  /** Waits until the log matches, or throws with the log so far. TCG is slow: generous default. */
  async waitFor(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = this.log.match(re);
      if (m) return m;
      if (Date.now() > end || this.proc.exitCode !== null) {
        throw new Error(`offloader log never matched ${re} (exit ${this.proc.exitCode}):\n${this.log}`);
      }
      await Bun.sleep(50);
    }
  }

  kill(signal: NodeJS.Signals): void {
    this.proc.kill(signal);
  }

  /** SIGTERM and wait; returns the exit code. */
  async stop(): Promise<number> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const code = await this.proc.exited;
    await this.reading;
    this.dirs.remove();
    return code;
  }
}
