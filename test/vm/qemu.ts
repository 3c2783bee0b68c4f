// Boots the VM under qemu (TCG: no KVM here) with the host's root as its root, runs one shell
// command in it and returns the command's output and exit status, read from the serial console
// (the init prints "EO-VM-EXIT <status>" last). The command file sits in a run directory under the
// cache, which the VM sees at the same path and may write to ($EO_VM_OUT: the files the command
// leaves there come back in the result); the directory is removed however the run ends.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { type BootFiles, CACHE } from "./image.ts";

export interface VmOptions {
  /** Kill the VM after this many seconds (status 124). */
  timeoutS?: number;
  memMiB?: number;
  cpus?: number;
  /** Working directory of the command inside the VM (a host path). */
  cwd?: string;
  /** Called with the console's output, line by line; default: copy to stdout. */
  onOutput?: (text: string) => void;
}

export interface VmResult {
  status: number;
  output: string;
  /** Seconds from qemu's start to the init's first line (kernel boot, modules, mounts). */
  bootS: number;
  totalS: number;
  /** The files the command wrote into $EO_VM_OUT, by name. */
  files: Record<string, string>;
}

const MARKER = /EO-VM-EXIT (\d+)/;

/** A console line without carriage returns, terminal escapes and firmware banners; null when only those. */
function clean(raw: string): string | null {
  const l = raw.replace(/\r|\x1b(\[[0-9;?]*[a-zA-Z]|c)|SeaBIOS \(version [^)]*\)|Booting from ROM\.\.\./g, "");
  return l === "" && raw !== "" ? null : l;
}

const spawnQemu = (args: string[]) => Bun.spawn(args, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });

export async function runInVm(boot: BootFiles, command: string, opts: VmOptions = {}): Promise<VmResult> {
  const runDir = mkdtempSync(`${resolve(CACHE)}/run-`);
  const script = `${runDir}/cmd.sh`;
  writeFileSync(script, `set -e\nexport EO_VM_OUT='${runDir}'\ncd '${opts.cwd ?? process.cwd()}'\n${command}\n`);
  const args = [
    "qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-nographic", "-no-reboot",
    "-m", String(opts.memMiB ?? 4096), "-smp", String(opts.cpus ?? 2),
    "-kernel", boot.kernel, "-initrd", boot.initrd,
    // quiet: only warnings and worse from the kernel on the console the output comes back on.
    "-append", `console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init eo.cmd=${script}`,
    "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
    // The run directory, writable: the init mounts it over its read-only copy.
    "-virtfs", `local,path=${runDir},mount_tag=hostrun,security_model=none`,
    "-nic", "none",
  ];
  const started = performance.now();
  let proc: ReturnType<typeof spawnQemu>;
  try {
    proc = spawnQemu(args);
  } catch (e) {
    rmSync(runDir, { recursive: true, force: true });
    throw e;
  }
  const onSignal = () => proc.kill("SIGKILL");
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const timer = setTimeout(() => proc.kill("SIGKILL"), (opts.timeoutS ?? 1800) * 1000);
  const emit = opts.onOutput ?? ((t: string) => process.stdout.write(t));
  let output = "";
  let bootS = NaN;
  try {
    const dec = new TextDecoder();
    const stderr = new Response(proc.stderr).text();
    let partial = "";
    for await (const chunk of proc.stdout) {
      // Whole lines, without carriage returns, the firmware's banner and terminal escapes.
      const lines = (partial + dec.decode(chunk, { stream: true })).split("\n");
      partial = lines.pop()!;
      // (The firmware ends its last line without a newline: the init's first line follows on it.)
      const text = lines.map(clean).filter((l) => l !== null).map((l) => `${l}\n`).join("");
      output += text;
      if (Number.isNaN(bootS) && output.includes("vm init:")) bootS = (performance.now() - started) / 1000;
      emit(text);
    }
    const last = clean(partial);
    if (last) emit(last);
    output += last ?? "";
    const code = await proc.exited;
    const m = MARKER.exec(output);
    const err = await stderr;
    if (err.trim()) emit(`\nqemu stderr: ${err.trim()}\n`);
    // No marker: the VM died (panic, qemu error) or the timeout killed it.
    const status = m ? Number(m[1]) : code === 0 ? 125 : proc.signalCode === "SIGKILL" ? 124 : 126;
    const files = Object.fromEntries(readdirSync(runDir).filter((f) => f !== "cmd.sh").map((f) => [f, readFileSync(`${runDir}/${f}`, "utf8")]));
    return { status, output, bootS, totalS: (performance.now() - started) / 1000, files };
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    if (proc.exitCode === null) proc.kill("SIGKILL");
    rmSync(runDir, { recursive: true, force: true });
  }
}
