// The TypeScript mirror of bpf/drop_abi.h (the dropper's tracepoint events and load-time
// parameters). test/dropper-abi.test.ts checks LAYOUT against the BTF of build/dropper.bpf.o.

export const DROP_EV_NETFILTER = 1;
export const DROP_EV_ROUTE = 2;
/** drop_event.ct_info: the packet carried no conntrack reference. */
export const DROP_CT_NONE = 0xff;

export const DROP_LAYOUT = {
  drop_event: {
    size: 64,
    members: {
      kind: 0, iif: 4, mark: 8, ct_status: 12, ct_info: 16, tcp_flags: 17, family: 18, proto: 19,
      smac: 20, sport: 26, dport: 28, pad: 30, saddr: 32, daddr: 48,
    },
  },
  drop_params: { size: 24, members: { netns_ino: 0, notify_interval_ns: 8, netfilter: 16, pad: 17, events_per_cpu_s: 20 } },
} as const;

export interface DropEvent {
  kind: number;
  iif: number;
  mark: number;
  ctStatus: number;
  ctInfo: number;
  tcpFlags: number;
  family: number;
  proto: number;
  smac: Uint8Array;
  /** Ports in host byte order. */
  sport: number;
  dport: number;
  /** 16 bytes each, IPv4 in the first four. */
  saddr: Uint8Array;
  daddr: Uint8Array;
}

export interface DropParams {
  netnsIno: bigint;
  notifyIntervalNs: bigint;
  netfilter: boolean;
  eventsPerCpuS: number;
}

const E = DROP_LAYOUT.drop_event.members;
const P = DROP_LAYOUT.drop_params.members;

export function decodeDropEvent(buf: Uint8Array): DropEvent {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    kind: v.getUint32(E.kind, true),
    iif: v.getUint32(E.iif, true),
    mark: v.getUint32(E.mark, true),
    ctStatus: v.getUint32(E.ct_status, true),
    ctInfo: v.getUint8(E.ct_info),
    tcpFlags: v.getUint8(E.tcp_flags),
    family: v.getUint8(E.family),
    proto: v.getUint8(E.proto),
    smac: buf.slice(E.smac, E.smac + 6),
    sport: v.getUint16(E.sport, false),
    dport: v.getUint16(E.dport, false),
    saddr: buf.slice(E.saddr, E.saddr + 16),
    daddr: buf.slice(E.daddr, E.daddr + 16),
  };
}

export function encodeDropParams(p: DropParams): Uint8Array {
  const buf = new Uint8Array(new ArrayBuffer(DROP_LAYOUT.drop_params.size));
  const v = new DataView(buf.buffer);
  v.setBigUint64(P.netns_ino, p.netnsIno, true);
  v.setBigUint64(P.notify_interval_ns, p.notifyIntervalNs, true);
  v.setUint8(P.netfilter, p.netfilter ? 1 : 0);
  v.setUint32(P.events_per_cpu_s, p.eventsPerCpuS, true);
  return buf;
}
