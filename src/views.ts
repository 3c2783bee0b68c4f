// `status` and `flows`: what a running daemon is doing, read from another shell through its
// status file and its pinned maps. Nothing here writes anything.
import {
  FLOW_ACT_DROP, LAYOUT, decodeAction, decodeIfaceStats, decodeKey, decodeStats, type FlowAction, type FlowKey, type FlowStats,
  type IfaceStats, ifaceSlotOwner,
} from "./abi.ts";
import { formatEndpoint, protoName } from "./addr.ts";
import { BpfMap } from "./bpf.ts";
import type { DaemonStatus } from "./status.ts";

/** One offloaded connection as the flow maps hold it. */
export interface FlowRow {
  connId: number;
  proto: string;
  family: number;
  dirs: { key: FlowKey; action: FlowAction; packets: bigint; bytes: bigint }[];
  idleS: number | null;
  closing: boolean;
}

/** Reads the pinned flow and stats maps and groups the flows by connection. */
export function readFlows(pinPath: string, nowNs: bigint): FlowRow[] {
  const flowsMap = BpfMap.openPinned(`${pinPath}/flows`);
  const flows = flowsMap.dump();
  flowsMap.close();
  const statsMap = BpfMap.openPinned(`${pinPath}/flow_stats`);
  const K = LAYOUT.flow_key.size;
  const A = LAYOUT.flow_action.size;
  const statsBuf = new Uint8Array(new ArrayBuffer(LAYOUT.flow_stats.size));
  const idBuf = new Uint8Array(new ArrayBuffer(4));
  const rows = new Map<number, FlowRow>();
  const stats = new Map<number, FlowStats | null>();
  for (let i = 0; i < flows.count; i++) {
    const key = decodeKey(flows.keys.slice(i * K, (i + 1) * K));
    const action = decodeAction(flows.values.slice(i * A, (i + 1) * A));
    if (!stats.has(action.connId)) {
      new DataView(idBuf.buffer).setUint32(0, action.connId, true);
      stats.set(action.connId, statsMap.lookup(idBuf, statsBuf) ? decodeStats(statsBuf) : null);
    }
    const st = stats.get(action.connId) ?? null;
    let row = rows.get(action.connId);
    if (!row) {
      const seen = st?.lastSeenNs ?? 0n;
      row = {
        connId: action.connId, proto: protoName(key.proto), family: key.family, dirs: [],
        idleS: seen > 0n ? Number((nowNs - seen) / 1_000_000n) / 1000 : null, closing: ((st?.flags ?? 0) & 1) !== 0,
      };
      rows.set(action.connId, row);
    }
    const d = st?.dir[action.dir];
    row.dirs.push({ key, action, packets: d?.packets ?? 0n, bytes: d?.bytes ?? 0n });
  }
  statsMap.close();
  for (const r of rows.values()) r.dirs.sort((a, b) => a.action.dir - b.action.dir);
  return [...rows.values()].sort((a, b) => a.connId - b.connId);
}

/** Per-interface counters of the datapath (pinned iface_stats, the slots devices hold), by ifindex. */
export function readIfaceStats(pinPath: string): Map<number, IfaceStats> {
  const map = BpfMap.openPinned(`${pinPath}/iface_stats`);
  const { count, values } = map.dump();
  map.close();
  const nCpus = map.valueSize / LAYOUT.iface_stats.size;
  const out = new Map<number, IfaceStats>();
  for (let i = 0; i < count; i++) {
    const value = values.subarray(i * map.valueSize, (i + 1) * map.valueSize);
    const ifindex = ifaceSlotOwner(value);
    if (ifindex) out.set(ifindex, decodeIfaceStats(value, nCpus));
  }
  return out;
}

export function formatIfaceStats(name: string, s: IfaceStats): string {
  return `  ${name}: fast path ${s.fwdPackets} packets (${s.fwdBytes} bytes), to the kernel ${s.passPackets} packets (${s.passBytes} bytes), dropped ${s.dropPackets}`;
}

/** `flows --state`: connections on the fast path, connections closing, or the dropper's entries. */
export const FLOW_STATES = ["offloaded", "closing", "dropped"] as const;
export type FlowState = (typeof FLOW_STATES)[number];
export const isFlowState = (s: string): s is FlowState => FLOW_STATES.some((x) => x === s);

export interface FlowFilter {
  proto?: string;
  iface?: string;
  state?: FlowState;
}

/** A drop entry of the dropper (one direction, FLOW_ACT_DROP), not a connection. */
const isDrop = (r: FlowRow) => r.dirs.some((d) => d.action.flags & FLOW_ACT_DROP);

const flowState = (r: FlowRow): FlowState => (isDrop(r) ? "dropped" : r.closing ? "closing" : "offloaded");

export function filterFlows(rows: FlowRow[], f: FlowFilter, ifname: (i: number) => string): FlowRow[] {
  return rows.filter((r) =>
    (!f.proto || r.proto === f.proto) &&
    (!f.state || flowState(r) === f.state) &&
    (!f.iface || r.dirs.some((d) => ifname(d.key.ifindex) === f.iface || ifname(d.action.outIfindex) === f.iface)));
}

/** One line per connection, in the manner of `conntrack -L`. */
export function formatFlow(r: FlowRow, ifname: (i: number) => string): string {
  const d = r.dirs[0];
  if (d && d.action.flags & FLOW_ACT_DROP) {
    const { key } = d;
    const idle = r.idleS === null ? "never" : `${r.idleS.toFixed(1)}s`;
    return `${r.proto.padEnd(4)}[DROP] ${formatEndpoint(key.family, key.saddr, key.sport)} -> ${formatEndpoint(key.family, key.daddr, key.dport)} on ${ifname(key.ifindex)} packets=${d.packets} idle=${idle}`;
  }
  const parts = r.dirs.map(({ key, action, packets, bytes }) => {
    const from = formatEndpoint(key.family, key.saddr, key.sport);
    const to = formatEndpoint(key.family, key.daddr, key.dport);
    const natFrom = formatEndpoint(key.family, action.saddr, action.sport);
    const natTo = formatEndpoint(key.family, action.daddr, action.dport);
    const nat = (natFrom !== from ? ` snat=${natFrom}` : "") + (natTo !== to ? ` dnat=${natTo}` : "");
    return `${action.dir === 0 ? "orig" : "reply"} ${from} -> ${to}${nat} ${ifname(key.ifindex)}->${ifname(action.outIfindex)} packets=${packets} bytes=${bytes}`;
  });
  const idle = r.idleS === null ? "never" : `${r.idleS.toFixed(1)}s`;
  return `${r.proto.padEnd(4)}${r.closing ? "[CLOSING] " : ""}${parts.join(" | ")} idle=${idle}`;
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  return [d ? `${d}d` : "", h ? `${h}h` : "", m ? `${m}m` : "", `${s % 60}s`].filter(Boolean).join(" ");
}

/** The `status` report for a running daemon. */
export function formatStatus(s: DaemonStatus, rows: FlowRow[] | null, now: number): string[] {
  const lines = [
    `ebpf-offloader ${s.version} running, pid ${s.pid}, up ${formatDuration(now - s.startedAt)}`,
    `attached: ${s.attachments.map((a) => `${a.ifname} (${a.hook})`).join(", ") || "nothing"}`,
    `connections: ${s.connections.offloaded} offloaded, ${s.connections.pending} waiting for conntrack (TCP handshake, no neighbour yet)`,
  ];
  if (rows) {
    const entries = rows.reduce((n, r) => n + r.dirs.length, 0);
    const carried = rows.filter((r) => !isDrop(r));
    const packets = carried.reduce((n, r) => n + r.dirs.reduce((m, d) => m + d.packets, 0n), 0n);
    const bytes = carried.reduce((n, r) => n + r.dirs.reduce((m, d) => m + d.bytes, 0n), 0n);
    lines.push(`flow map: ${entries} of ${s.maxFlows} entries; offloaded connections carried ${packets} packets, ${bytes} bytes on the fast path`);
  } else {
    lines.push("flow map: not pinned (started with --pin-path none or without bpffs): no flow details");
  }
  if (s.dropper) {
    const d = s.dropper;
    lines.push(d.mode === "off" ? "dropper: off" : `dropper: ${d.mode}, ${d.entries.blackhole} blackhole and ${d.entries.netfilter} learnt drop entries, ${d.packets} packets dropped at XDP, ${d.flushes} flushes, timeout ${d.timeoutS} s`);
  }
  const handed = Object.entries(s.handedBack).map(([k, v]) => `${k} ${v}`).join(", ");
  lines.push(`handed back to the kernel: ${handed || "none yet"}`);
  lines.push(`recent warnings and errors: ${s.lastErrors.length ? "" : "none"}`);
  for (const e of s.lastErrors) lines.push(`  ${e}`);
  return lines;
}
