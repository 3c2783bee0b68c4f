// PPPoE sessions as the kernel's pppoe driver lists them in /proc/net/pppoe, and which PPP
// interface carries which session. Pure parsers; the caller reads the files.
//
// /proc/net/pppoe: a header line, then one line per connected session: "%08X %pM %8s", the session
// id, the peer's (access concentrator's) MAC and the Ethernet device the session runs on. The id
// is printed from the __be16 as stored, so a little-endian host shows it byte-swapped: session
// 0x1234 reads "00003412" on x86 and arm, "00001234" on big-endian MIPS.

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface PppoeSession {
  /** Session id as it stands in the PPPoE header (0x1234 is sent as bytes 12 34). */
  sid: number;
  /** The access concentrator's MAC: destination of every session frame we send. */
  peer: Uint8Array;
  /** The Ethernet device the session runs on (may be a VLAN device, e.g. "eth0.7"). */
  device: string;
}

export class PppoeFormatError extends Error {
  constructor(line: number, text: string) {
    super(`/proc/net/pppoe line ${line}: unexpected "${text}"`);
    this.name = "PppoeFormatError";
  }
}

/** pppd options that take a value, which must not be mistaken for a device name ("ipparam wan"). */
const PPPD_VALUE_OPTIONS = new Set([
  "ipparam", "user", "password", "mtu", "mru", "plugin", "unit", "linkname", "holdoff", "maxfail", "idle",
  "lcp-echo-interval", "lcp-echo-failure", "connect", "disconnect", "pty", "remotename", "name", "file", "call",
  "ip-up-script", "ip-down-script", "ipv6-up-script", "ipv6-down-script", "pppoe-service", "pppoe-ac-name",
  "rp_pppoe_service", "rp_pppoe_ac", "host-uniq", "pppoe-host-uniq", "pppoe-mac",
]);

const swap16 = (x: number) => ((x & 0xff) << 8) | (x >> 8);

/** The sessions listed in /proc/net/pppoe text; `littleEndian`: the byte order of the host that wrote it. */
export function parseProcPppoe(text: string, littleEndian = HOST_LE): PppoeSession[] {
  const sessions: PppoeSession[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const fields = line.trim().split(/\s+/);
    if (i === 0 || fields[0] === "") {
      if (i === 0 && fields[0] !== "Id" && fields[0] !== "") throw new PppoeFormatError(1, line);
      return;
    }
    const [id, mac, device] = fields;
    if (fields.length !== 3 || !/^[0-9A-Fa-f]{1,8}$/.test(id!) || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac!)) {
      throw new PppoeFormatError(i + 1, line);
    }
    const raw = parseInt(id!, 16);
    if (raw > 0xffff) throw new PppoeFormatError(i + 1, line);
    const peer = new Uint8Array(mac!.split(":").map((b) => parseInt(b, 16)));
    sessions.push({ sid: littleEndian ? swap16(raw) : raw, peer, device: device! });
  });
  return sessions;
}

/**
 * PPP interface -> Ethernet device, from pppd command lines (each the NUL-split
 * /proc/PID/cmdline): "ifname pppoe-wan" names the interface, and the PPPoE device is given as
 * "nic-eth0.7" or as a bare device name (one of `devices`, the devices with sessions).
 * Command lines of other programs, and pppd instances without both, are ignored.
 */
export function pppdDevices(cmdlines: readonly (readonly string[])[], devices: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const args of cmdlines) {
    const prog = args[0]?.split("/").pop();
    if (prog !== "pppd") continue;
    let ifname: string | null = null;
    let device: string | null = null;
    for (let i = 1; i < args.length; i++) {
      const a = args[i]!;
      if (a === "ifname" && i + 1 < args.length) ifname = args[++i]!;
      else if (PPPD_VALUE_OPTIONS.has(a)) i++;
      else if (a.startsWith("nic-")) device = a.slice(4);
      else if (device === null && devices.has(a)) device = a;
    }
    if (ifname !== null && device !== null) out.set(ifname, device);
  }
  return out;
}
