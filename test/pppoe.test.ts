// /proc/net/pppoe as the kernel's pppoe driver writes it ("%08X %pM %8s" of the __be16 session id,
// peer MAC, device), and pppd command lines as OpenWrt and Debian start pppd.
import { describe, expect, test } from "bun:test";
import { parseProcPppoe, PppoeFormatError, pppdDevices } from "../src/pppoe.ts";

const HEADER = "Id       Address              Device\n";

describe("parseProcPppoe", () => {
  test("little-endian host: the id is printed byte-swapped", () => {
    const s = parseProcPppoe(`${HEADER}00003412 00:11:22:33:44:55    wan.7\n0000CDAB 0A:0B:0C:0D:0E:0F     eth1\n`, true);
    expect(s).toEqual([
      { sid: 0x1234, peer: new Uint8Array([0, 0x11, 0x22, 0x33, 0x44, 0x55]), device: "wan.7" },
      { sid: 0xabcd, peer: new Uint8Array([10, 11, 12, 13, 14, 15]), device: "eth1" },
    ]);
  });

  test("big-endian host (MIPS): printed as is", () => {
    expect(parseProcPppoe(`${HEADER}00001234 00:11:22:33:44:55 eth0.7\n`, false)[0]?.sid).toBe(0x1234);
  });

  test("no sessions: the header alone, or an empty file", () => {
    expect(parseProcPppoe(HEADER, true)).toEqual([]);
    expect(parseProcPppoe("", true)).toEqual([]);
  });

  test("a device name as long as IFNAMSIZ allows, no padding left", () => {
    expect(parseProcPppoe(`${HEADER}00000100 00:11:22:33:44:55 pppoe-verylong1\n`, true)[0]?.device).toBe("pppoe-verylong1");
  });

  test("anything else is refused with the line", () => {
    expect(() => parseProcPppoe(`${HEADER}00003412 00:11:22:33:44 wan\n`, true)).toThrow(PppoeFormatError);
    expect(() => parseProcPppoe(`${HEADER}zz 00:11:22:33:44:55 wan\n`, true)).toThrow("/proc/net/pppoe line 2");
    expect(() => parseProcPppoe(`${HEADER}00010000 00:11:22:33:44:55 wan\n`, true)).toThrow(PppoeFormatError);
    expect(() => parseProcPppoe("Something else\n", true)).toThrow("line 1");
  });
});

describe("pppdDevices", () => {
  const devices = new Set(["wan.7", "eth1", "wan"]);

  test("OpenWrt: ifname and nic-DEV", () => {
    const openwrt = ["/usr/sbin/pppd", "nodetach", "ipparam", "wan", "ifname", "pppoe-wan", "lcp-echo-interval", "1",
      "+ipv6", "set", "AUTOIPV6=1", "nodefaultroute", "usepeerdns", "maxfail", "1", "user", "u", "password", "p",
      "ip-up-script", "/lib/netifd/ppp-up", "mtu", "1492", "mru", "1492", "plugin", "pppoe.so", "nic-wan.7"];
    expect(pppdDevices([openwrt], devices)).toEqual(new Map([["pppoe-wan", "wan.7"]]));
  });

  test("rp-pppoe with a bare device name; option values are not device names", () => {
    const cmd = ["pppd", "plugin", "rp-pppoe.so", "ipparam", "wan", "eth1", "ifname", "ppp0", "noauth"];
    expect(pppdDevices([cmd], devices)).toEqual(new Map([["ppp0", "eth1"]]));
  });

  test("other programs and incomplete command lines are ignored", () => {
    expect(pppdDevices([["/sbin/init"], ["pppd", "call", "isp"], ["pppd", "ifname", "ppp1"], []], devices)).toEqual(new Map());
  });
});
