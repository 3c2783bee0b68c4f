// The daemon's status file: what `ebpf-offloader status` shows about a running daemon that only
// the daemon knows (attachments, configuration, flows not in the map, recent errors). Written
// atomically once a second; removed on a clean exit.
import type { DropperStatus } from "./dropper.ts";
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";

export interface DaemonStatus {
  pid: number;
  version: string;
  startedAt: number;
  pinPath: string | null;
  attachments: { ifname: string; ifindex: number; hook: string }[];
  maxFlows: number;
  connections: { offloaded: number; pending: number };
  handedBack: Record<string, number>;
  /** Absent in the status of a daemon from before the dropper. */
  dropper?: DropperStatus;
  lastErrors: string[];
  updatedAt: number;
}

export const statusPath = (runDir: string) => `${runDir}/status.json`;

export function writeStatus(runDir: string, s: DaemonStatus): void {
  const path = statusPath(runDir);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function removeStatus(runDir: string): void {
  rmSync(statusPath(runDir), { force: true });
}

/** The status of a running daemon, or null when none runs with this run directory. */
export function readLiveStatus(runDir: string): DaemonStatus | null {
  const path = statusPath(runDir);
  if (!existsSync(path)) return null;
  const s = JSON.parse(readFileSync(path, "utf8")) as DaemonStatus;
  return processAlive(s.pid) ? s : null;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
