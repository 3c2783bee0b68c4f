// Runs the compiled ebpf-offloader binary inside a lab namespace and watches its log. Each
// instance gets its own run directory and a bpffs of its own for the pinned maps (/sys is
// remounted inside `ip netns exec`, so the host's /sys/fs/bpf is not visible there).
import type { Subprocess } from "bun";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { type Lab, sh } from "./lab.ts";

export const BIN = `${import.meta.dir}/../dist/ebpf-offloader`;

/** A run directory and a bpffs mount; several daemon runs may share them (restart tests). */
export class StateDirs {
  readonly root = mkdtempSync(`/tmp/eo-state-${process.pid}-`);
  readonly runDir = `${this.root}/run`;
  readonly bpffs = `${this.root}/bpf`;
  readonly pinPath = `${this.bpffs}/offloader`;

  constructor() {
    sh(["mkdir", "-p", this.runDir, this.bpffs]);
    sh(["mount", "-t", "bpf", "bpf", this.bpffs]);
  }

  remove(): void {
    sh(["umount", this.bpffs], { allowFail: true });
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Removes the state directories (and bpffs mounts) of test runs that were killed. */
  static removeStale(): void {
    for (const name of readdirSync("/tmp")) {
      const pid = Number(/^eo-state-(\d+)-/.exec(name)?.[1]);
      if (!pid || pid === process.pid || existsSync(`/proc/${pid}`)) continue;
      sh(["umount", `/tmp/${name}/bpf`], { allowFail: true });
      rmSync(`/tmp/${name}`, { recursive: true, force: true });
    }
  }
}

StateDirs.removeStale();

export class Offloader {
  private log = "";
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readonly reading: Promise<void>;
  private readonly ownDirs: boolean;
  private readonly waitMs: number;
  readonly dirs: StateDirs;

  /**
   * A lab's router namespace (test/lab.ts, or the VM's lab); `bin`: another build; `waitMs`:
   * waitFor's default; `wrap`: a command inside the namespace that runs the daemon's command line
   * (appended to it as arguments), e.g. to change the daemon's view of the file system.
   */
  constructor(lab: Pick<Lab, "router">, args: string[], dirs?: StateDirs, opts: { bin?: string; waitMs?: number; wrap?: string[] } = {}) {
    this.ownDirs = !dirs;
    this.dirs = dirs ?? new StateDirs();
    this.waitMs = opts.waitMs ?? 10_000;
    this.proc = Bun.spawn(
      [
        "ip", "netns", "exec", lab.router, ...(opts.wrap ?? []), opts.bin ?? BIN, "run", ...args, "--pin-path", this.dirs.pinPath, "--run-dir", this.dirs.runDir,
        // Flows offloaded and handed back are logged at debug level; the tests watch for them.
        ...(args.includes("--log-level") ? [] : ["--log-level", "debug"]),
      ],
      { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
    );
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
  async waitFor(re: RegExp, timeoutMs = this.waitMs): Promise<RegExpMatchArray> {
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

  /** SIGTERM and wait; returns the exit code. Removes the state directories it created. */
  async stop(): Promise<number> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const code = await this.proc.exited;
    await this.reading;
    if (this.ownDirs) this.dirs.remove();
    return code;
  }
}
