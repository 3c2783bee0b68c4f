// CPU time from /proc: the whole machine's (/proc/stat, every namespace shares the same CPUs)
// and one process's (/proc/PID/stat). Ticks are USER_HZ (100 per second) in both.
import { readFileSync } from "node:fs";

const USER_HZ = 100;

export interface CpuTimes {
  user: number;
  system: number;
  softirq: number;
  irq: number;
  idle: number;
  /** Every field, in seconds. */
  total: number;
}

/** The "cpu" line of /proc/stat, in seconds summed over all CPUs. */
export function machineCpu(): CpuTimes {
  const line = readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith("cpu ")) ?? "";
  // user nice system idle iowait irq softirq steal guest guest_nice
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const v = (i: number) => (f[i] ?? 0) / USER_HZ;
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0) / USER_HZ;
  return { user: v(0) + v(1), system: v(2), irq: v(5), softirq: v(6), idle: v(3) + v(4), total };
}

export function cpuDelta(a: CpuTimes, b: CpuTimes): CpuTimes {
  return {
    user: b.user - a.user, system: b.system - a.system, softirq: b.softirq - a.softirq,
    irq: b.irq - a.irq, idle: b.idle - a.idle, total: b.total - a.total,
  };
}

/** utime + stime of a process (all its threads), in seconds. */
export function processCpuS(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) in parentheses.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** VmRSS and VmHWM of a process, in MiB. */
export function processMemMiB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kb("VmRSS") / 1024, hwm: kb("VmHWM") / 1024 };
}
