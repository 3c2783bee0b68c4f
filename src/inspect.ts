// The `status` and `flows` commands: they read a running daemon's status file and pinned maps,
// from another shell, and never change anything.
import { monotonicNs, ifIndexToName } from "../ffi/libc.ts";
import { UsageError } from "./cli.ts";
import { readLiveStatus } from "./status.ts";
import { FLOW_STATES, type FlowFilter, type FlowRow, filterFlows, isFlowState, formatFlow, formatIfaceStats, formatStatus, readFlows, readIfaceStats } from "./views.ts";

/** Nothing to inspect: no daemon runs, or it keeps no pinned maps. */
export class NotRunningError extends Error {}

const ifname = (i: number) => ifIndexToName(i) ?? `if${i}`;

/** bigint counters as JSON numbers (exact up to 2^53, beyond any realistic counter). */
const toJson = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? Number(x) : x instanceof Uint8Array ? [...x] : x), 2);

function liveStatus(runDir: string) {
  const s = readLiveStatus(runDir);
  if (!s) throw new NotRunningError(`no ebpf-offloader is running with run directory ${runDir}`);
  return s;
}

export function statusCommand(a: { "run-dir": string; json: boolean }): string {
  const s = liveStatus(a["run-dir"]);
  const rows = s.pinPath ? readFlows(s.pinPath, monotonicNs()) : null;
  const ifaces = s.pinPath ? readIfaceStats(s.pinPath) : new Map();
  if (a.json) return `${toJson({ ...s, flowEntries: rows?.reduce((n, r) => n + r.dirs.length, 0) ?? null, interfaces: Object.fromEntries([...ifaces].map(([i, v]) => [ifname(i), v])) })}\n`;
  const lines = formatStatus(s, rows, Date.now());
  if (ifaces.size) lines.push("interfaces (packets arriving on each):", ...[...ifaces].map(([i, v]) => formatIfaceStats(ifname(i), v)));
  return `${lines.join("\n")}\n`;
}

export function flowsCommand(a: { "run-dir": string; proto?: string; iface?: string; state?: string; json: boolean }): string {
  if (a.proto && !["tcp", "udp"].includes(a.proto)) throw new UsageError(`--proto must be tcp or udp, not "${a.proto}"`);
  if (a.state !== undefined && !isFlowState(a.state)) throw new UsageError(`--state must be ${FLOW_STATES.join(", ")}, not "${a.state}"`);
  const s = liveStatus(a["run-dir"]);
  if (!s.pinPath) throw new NotRunningError("the daemon runs without pinned maps (--pin-path none, or no bpffs): no flow list");
  const filter: FlowFilter = { proto: a.proto, iface: a.iface, state: a.state };
  const rows: FlowRow[] = filterFlows(readFlows(s.pinPath, monotonicNs()), filter, ifname);
  if (a.json) return `${toJson(rows)}\n`;
  return rows.map((r) => `${formatFlow(r, ifname)}\n`).join("");
}
