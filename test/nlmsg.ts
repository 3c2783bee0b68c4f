// Builds rtnetlink messages as the kernel encodes them (linux/netlink.h, rtnetlink.h, if_link.h,
// if_bridge.h, neighbour.h), little endian, for the pure topology tests: attributes are a 4-byte
// header (length including the header, type) and a payload padded to 4 bytes. test/netlink.test.ts
// pins these helpers to hand-written bytes.

export type Bytes = number[];

const le16 = (v: number): Bytes => [v & 0xff, (v >> 8) & 0xff];
const le32 = (v: number): Bytes => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const pad4 = (b: Bytes): Bytes => [...b, ...Array<number>((4 - (b.length % 4)) % 4).fill(0)];

export function attr(type: number, payload: Bytes): Bytes {
  return pad4([...le16(4 + payload.length), ...le16(type), ...payload]);
}
export const u8 = (type: number, v: number) => attr(type, [v]);
export const u16 = (type: number, v: number) => attr(type, le16(v));
export const be16 = (type: number, v: number) => attr(type, [v >> 8, v & 0xff]);
export const u32 = (type: number, v: number) => attr(type, le32(v));
export const str = (type: number, s: string) => attr(type, [...new TextEncoder().encode(s), 0]);
export const mac = (type: number, m: string) => attr(type, m.split(":").map((x) => parseInt(x, 16)));
export const nest = (type: number, ...attrs: Bytes[]) => attr(type, attrs.flat());

/** A complete message: nlmsghdr (length, type, flags, seq, pid 0) and body. */
export function nlmsg(type: number, body: Bytes, opts: { flags?: number; seq?: number } = {}): Bytes {
  return [...le32(16 + body.length), ...le16(type), ...le16(opts.flags ?? 0), ...le32(opts.seq ?? 0), ...le32(0), ...body];
}

/** struct ifinfomsg */
export function ifinfomsg(family: number, type: number, index: number, flags: number): Bytes {
  return [family, 0, ...le16(type), ...le32(index), ...le32(flags), ...le32(0)];
}

/** struct bridge_vlan_info inside IFLA_BRIDGE_VLAN_INFO (2) */
export const vlanInfo = (flags: number, vid: number) => attr(2, [...le16(flags), ...le16(vid)]);

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_RUNNING = 0x40;
export const UP = IFF_UP | IFF_RUNNING;

export interface LinkSpec {
  index: number;
  name: string;
  type?: number;
  flags?: number;
  mac?: string;
  mtu?: number;
  link?: number;
  master?: number;
  portName?: string;
  /** IFLA_LINKINFO: kind, kind-specific data, slave kind and data. */
  kind?: string;
  data?: Bytes[];
  slaveKind?: string;
  slaveData?: Bytes[];
  extra?: Bytes[];
}

/** RTM_NEWLINK (AF_UNSPEC) with the attributes the kernel puts first, in its order. */
export function linkMessage(l: LinkSpec, msgType = RTM_NEWLINK): Bytes {
  const info: Bytes[] = [];
  if (l.kind !== undefined) info.push(str(1, l.kind));
  if (l.data) info.push(nest(2, ...l.data));
  if (l.slaveKind !== undefined) info.push(str(4, l.slaveKind));
  if (l.slaveData) info.push(nest(5, ...l.slaveData));
  const attrs: Bytes[] = [str(3, l.name), u32(4, l.mtu ?? 1500)];
  if (l.link !== undefined) attrs.push(u32(5, l.link));
  if (l.master !== undefined) attrs.push(u32(10, l.master));
  if (info.length) attrs.push(nest(18, ...info));
  if (l.mac !== undefined) attrs.push(mac(1, l.mac));
  if (l.portName !== undefined) attrs.push(str(38, l.portName));
  attrs.push(...(l.extra ?? []));
  return nlmsg(msgType, [...ifinfomsg(0, l.type ?? 1, l.index, l.flags ?? UP), ...attrs.flat()]);
}

/** RTM_NEWLINK of family AF_BRIDGE with the VLAN entries (flags, vid) in IFLA_AF_SPEC. */
export function bridgeVlanMessage(index: number, master: number, vlans: [number, number][], msgType = RTM_NEWLINK): Bytes {
  return nlmsg(msgType, [
    ...ifinfomsg(7, 1, index, UP),
    ...u32(10, master),
    ...nest(26, ...vlans.map(([flags, vid]) => vlanInfo(flags, vid))),
  ]);
}

export const hexOf = (b: Bytes) => Buffer.from(b).toString("hex");
