// What each network device's driver offers XDP, from the "netdev" generic-netlink family
// (Linux 6.3+): NETDEV_CMD_DEV_GET reports NETDEV_A_DEV_XDP_FEATURES, a set of NETDEV_XDP_ACT_*
// bits. Layouts are those of linux/netlink.h, linux/genetlink.h and linux/netdev.h. Message
// building and parsing only (pure functions); src/genl.ts does the socket work.

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const NLMSG_HDRLEN = 16;
const GENL_HDRLEN = 4;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;

const NETDEV_CMD_DEV_GET = 1;
const NETDEV_A_DEV_IFINDEX = 1;
const NETDEV_A_DEV_XDP_FEATURES = 3;

/** enum netdev_xdp_act */
export const XDP_ACT = {
  basic: 1,
  redirect: 2,
  "ndo-xmit": 4,
  "xsk-zerocopy": 8,
  "hw-offload": 16,
  "rx-sg": 32,
  "ndo-xmit-sg": 64,
} as const;

/** "basic,redirect,ndo-xmit" as `ynl` prints the set; "none" for 0. */
export function xdpFeatureNames(features: number): string {
  const names = Object.entries(XDP_ACT).filter(([, bit]) => features & bit).map(([n]) => n);
  return names.length ? names.join(",") : "none";
}

const align4 = (n: number) => (n + 3) & ~3;
const view = (buf: Uint8Array) => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

function header(buf: Uint8Array, type: number, flags: number, seq: number, cmd: number): number {
  buf.fill(0, 0, NLMSG_HDRLEN + GENL_HDRLEN);
  const v = view(buf);
  v.setUint16(4, type, HOST_LE);
  v.setUint16(6, flags, HOST_LE);
  v.setUint32(8, seq, HOST_LE);
  v.setUint8(NLMSG_HDRLEN, cmd);
  v.setUint8(NLMSG_HDRLEN + 1, 1); // version
  return NLMSG_HDRLEN + GENL_HDRLEN;
}

/** CTRL_CMD_GETFAMILY for a family by name. */
export function buildGetFamily(buf: Uint8Array, seq: number, family: string): number {
  let off = header(buf, GENL_ID_CTRL, NLM_F_REQUEST, seq, CTRL_CMD_GETFAMILY);
  const name = new TextEncoder().encode(`${family}\0`);
  const v = view(buf);
  v.setUint16(off, 4 + name.length, HOST_LE);
  v.setUint16(off + 2, CTRL_ATTR_FAMILY_NAME, HOST_LE);
  buf.fill(0, off + 4, off + 4 + align4(name.length));
  buf.set(name, off + 4);
  off += 4 + align4(name.length);
  v.setUint32(0, off, HOST_LE);
  return off;
}

/** NETDEV_CMD_DEV_GET as a dump of every device. */
export function buildDevDump(buf: Uint8Array, seq: number, familyId: number): number {
  const len = header(buf, familyId, NLM_F_REQUEST | NLM_F_DUMP, seq, NETDEV_CMD_DEV_GET);
  view(buf).setUint32(0, len, HOST_LE);
  return len;
}

/** One received netlink message: its type and the bounds of the generic-netlink attributes. */
export type Message =
  | { kind: "data"; type: number; attrs: [number, number] }
  | { kind: "done" }
  | { kind: "error"; errno: number };

/** The messages of `seq` among the `len` bytes received. */
export function parseMessages(buf: Uint8Array, len: number, seq: number): Message[] {
  const v = view(buf);
  const out: Message[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= len; ) {
    const msgLen = v.getUint32(off, HOST_LE);
    if (msgLen < NLMSG_HDRLEN || off + msgLen > len) throw new Error(`malformed netlink message: length ${msgLen}`);
    if (v.getUint32(off + 8, HOST_LE) === seq) {
      const type = v.getUint16(off + 4, HOST_LE);
      if (type === NLMSG_DONE) out.push({ kind: "done" });
      else if (type === NLMSG_ERROR) {
        if (msgLen < NLMSG_HDRLEN + 4) throw new Error("malformed netlink message: short error");
        const errno = -v.getInt32(off + NLMSG_HDRLEN, HOST_LE);
        // errno 0 is an acknowledgement, which only ends a request.
        out.push(errno === 0 ? { kind: "done" } : { kind: "error", errno });
      } else out.push({ kind: "data", type, attrs: [off + NLMSG_HDRLEN + GENL_HDRLEN, off + msgLen] });
    }
    off += align4(msgLen);
  }
  return out;
}

function eachAttr(buf: Uint8Array, [start, end]: [number, number], fn: (type: number, v: DataView, off: number, len: number) => void): void {
  const v = view(buf);
  for (let off = start; off + 4 <= end; ) {
    const len = v.getUint16(off, HOST_LE);
    if (len < 4 || off + len > end) throw new Error(`malformed netlink attribute: length ${len}`);
    fn(v.getUint16(off + 2, HOST_LE) & 0x3fff, v, off + 4, len - 4);
    off += align4(len);
  }
}

export function parseFamilyId(buf: Uint8Array, attrs: [number, number]): number | null {
  let id: number | null = null;
  eachAttr(buf, attrs, (type, v, off, len) => {
    if (type === CTRL_ATTR_FAMILY_ID && len >= 2) id = v.getUint16(off, HOST_LE);
  });
  return id;
}

/** ifindex and XDP feature bits of one NETDEV_CMD_DEV_GET reply. */
export function parseDev(buf: Uint8Array, attrs: [number, number]): { ifindex: number; features: number } {
  const dev = { ifindex: 0, features: 0 };
  eachAttr(buf, attrs, (type, v, off, len) => {
    if (type === NETDEV_A_DEV_IFINDEX && len >= 4) dev.ifindex = v.getUint32(off, HOST_LE);
    else if (type === NETDEV_A_DEV_XDP_FEATURES && len >= 8) dev.features = Number(v.getBigUint64(off, HOST_LE) & 0xffffffffn);
  });
  return dev;
}
