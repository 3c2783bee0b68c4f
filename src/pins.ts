// Where the daemon pins its maps (bpffs) and keeps its status file, and how they are cleaned up.
// Pinned maps let a restarted daemon adopt the flows of the previous run and let `flows` and
// `status` read the live tables from another shell.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, rmdirSync } from "node:fs";
import { tryLock } from "../ffi/libc.ts";
import { dirname } from "node:path";


/** The maps that outlive the daemon process. */
export const PINNED_MAPS = ["flows", "flow_stats", "flow_config", "iface_stats"] as const;

/** The filesystem type of the mount that holds `path`, from /proc/self/mounts. */
export function fsTypeOf(path: string, mounts = readFileSync("/proc/self/mounts", "utf8")): string | null {
  let best: { point: string; type: string } | null = null;
  for (const line of mounts.split("\n")) {
    const [, point, type] = line.split(" ");
    if (!point || !type) continue;
    const p = point.replace(/\\040/g, " ");
    const covers = path === p || path.startsWith(p.endsWith("/") ? p : `${p}/`);
    if (covers && (!best || p.length >= best.point.length)) best = { point: p, type };
  }
  return best?.type ?? null;
}

/** Checks that the pin directory can live where it is asked to; returns why not, or null. */
export function pinPathProblem(pinPath: string): string | null {
  if (fsTypeOf(dirname(pinPath)) !== "bpf") {
    return `${dirname(pinPath)} is not a BPF filesystem (mount it: mount -t bpf bpf ${dirname(pinPath)})`;
  }
  return null;
}

export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true });
}

/**
 * Locks the pin directory for this process (flock on the directory itself, released when the
 * process ends, however it ends): the fd to keep, or null when another daemon uses these maps.
 */
export function lockPinPath(pinPath: string): number | null {
  const fd = openSync(pinPath, "r");
  if (tryLock(fd)) return fd;
  closeSync(fd);
  return null;
}

/** Removes the pinned maps and their directory (a clean shutdown). */
export function removePins(pinPath: string): void {
  if (!existsSync(pinPath)) return;
  for (const name of readdirSync(pinPath)) rmSync(`${pinPath}/${name}`, { force: true });
  rmdirSync(pinPath);
}
