// src/conntrack.ts against the real kernel, inside a throwaway network namespace (conntrack
// tables are per namespace, so the host's table is never touched). The test process switches its
// own thread into the namespace only while it opens ctnetlink sockets (they stay bound to it);
// the conntrack CLI runs there through `ip netns exec`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { JSCallback, dlopen, ptr, type Pointer } from "bun:ffi";
import { closeSync, openSync, readFileSync, writeFileSync } from "node:fs";
import {
  ATTR_ORIG_IPV4_DST,
  ATTR_ORIG_IPV4_SRC,
  ATTR_ORIG_L3PROTO,
  ATTR_ORIG_L4PROTO,
  ATTR_ORIG_PORT_DST,
  ATTR_ORIG_PORT_SRC,
  ATTR_TCP_FLAGS_ORIG,
  ATTR_TCP_FLAGS_REPL,
  CONNTRACK,
  IPS_ASSURED,
  IPS_CONFIRMED,
  IPS_DST_NAT,
  IPS_DYING,
  IPS_HELPER,
  IPS_OFFLOAD,
  IPS_SEQ_ADJUST,
  IPS_SRC_NAT,
  IPS_UNTRACKED,
  IP_CT_TCP_FLAG_BE_LIBERAL,
  NFCT_CB_CONTINUE,
  NFCT_Q_GET,
  NFCT_T_ALL,
  NF_NETLINK_CONNTRACK_DESTROY,
  NF_NETLINK_CONNTRACK_NEW,
  NF_NETLINK_CONNTRACK_UPDATE,
  TCP_CONNTRACK_CLOSE,
  TCP_CONNTRACK_ESTABLISHED,
  TCP_CONNTRACK_SYN_SENT,
  nfct,
} from "../ffi/conntrack.ts";
import * as bindings from "../ffi/conntrack.ts";
import { findLibrary } from "../ffi/library-path.ts";
import {
  Conntrack,
  ConntrackEvents,
  type ConntrackEventType,
  type CtEntry,
  defaultTimeout,
  offloadable,
} from "../src/conntrack.ts";
import type { Tuple } from "../src/nat.ts";

// ---- namespace plumbing ----

const libc = dlopen(findLibrary(["libc.so.6", "libc.so"]), { setns: { args: ["i32", "i32"], returns: "i32" } });
const CLONE_NEWNET = 0x40000000;
const NS = `eo-ct-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

function sh(cmd: string[], input?: string): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: input === undefined ? "ignore" : new TextEncoder().encode(input) });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** Runs fn with this thread in the test namespace; sockets opened there stay in it. */
function inNetns<T>(fn: () => T): T {
  const self = openSync("/proc/thread-self/ns/net", "r");
  const target = openSync(`/run/netns/${NS}`, "r");
  try {
    if (libc.symbols.setns(target, CLONE_NEWNET) !== 0) throw new Error(`setns into ${NS} failed`);
    try {
      return fn();
    } finally {
      if (libc.symbols.setns(self, CLONE_NEWNET) !== 0) throw new Error("cannot return to the original network namespace");
    }
  } finally {
    closeSync(self);
    closeSync(target);
  }
}

const conntrackCli = (...args: string[]) => sh(["ip", "netns", "exec", NS, "conntrack", ...args]);

// ---- tuples ----

function addr(s: string): Uint8Array {
  const out = new Uint8Array(16);
  if (s.includes(".")) {
    out.set(s.split(".").map(Number));
    return out;
  }
  const [head = "", tail = ""] = s.split("::");
  const words = (p: string) => (p ? p.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

const rndPort = () => 10000 + Math.floor(Math.random() * 50000);

function tuple(proto: "tcp" | "udp", src: string, dst: string, sport: number, dport: number): Tuple {
  return { family: src.includes(":") ? 10 : 2, proto: proto === "tcp" ? 6 : 17, src: addr(src), dst: addr(dst), sport, dport };
}

/** conntrack -I for an original tuple, with extra CLI options. */
function insert(t: Tuple, srcText: string, dstText: string, ...extra: string[]): void {
  conntrackCli("-I", "-p", t.proto === 6 ? "tcp" : "udp", "-s", srcText, "-d", dstText, "--sport", String(t.sport), "--dport", String(t.dport), ...extra);
}

function established(...extra: string[]): string[] {
  return ["--state", "ESTABLISHED", "-t", "100", "-u", "SEEN_REPLY,ASSURED", ...extra];
}

// ---- reading the TCP window flags, which CtEntry does not carry ----

function tcpFlags(h: Pointer, t: Tuple): [number, number] | null {
  let flags: [number, number] | null = null;
  const cb = new JSCallback(
    (_type: number, ct: Pointer) => {
      flags = [nfct.symbols.nfct_get_attr_u8(ct, ATTR_TCP_FLAGS_ORIG), nfct.symbols.nfct_get_attr_u8(ct, ATTR_TCP_FLAGS_REPL)];
      return NFCT_CB_CONTINUE;
    },
    { args: ["i32", "ptr", "ptr"], returns: "i32" },
  );
  const buf = new Uint8Array(new ArrayBuffer(16));
  const ct = nfct.symbols.nfct_new() as Pointer;
  try {
    nfct.symbols.nfct_callback_register(h, NFCT_T_ALL, cb.ptr, null);
    nfct.symbols.nfct_set_attr_u8(ct, ATTR_ORIG_L3PROTO, 2);
    nfct.symbols.nfct_set_attr_u8(ct, ATTR_ORIG_L4PROTO, 6);
    buf.set(t.src);
    nfct.symbols.nfct_set_attr(ct, ATTR_ORIG_IPV4_SRC, ptr(buf));
    buf.set(t.dst);
    nfct.symbols.nfct_set_attr(ct, ATTR_ORIG_IPV4_DST, ptr(buf));
    const be16 = (p: number) => ((p & 0xff) << 8) | (p >> 8);
    nfct.symbols.nfct_set_attr_u16(ct, ATTR_ORIG_PORT_SRC, be16(t.sport));
    nfct.symbols.nfct_set_attr_u16(ct, ATTR_ORIG_PORT_DST, be16(t.dport));
    nfct.symbols.nfct_query(h, NFCT_Q_GET, ct);
    nfct.symbols.nfct_callback_unregister(h);
  } finally {
    nfct.symbols.nfct_destroy(ct);
    cb.close();
  }
  return flags;
}

// ---- fixtures ----

let ct: Conntrack;
let rawHandle: Pointer;
const events: { type: ConntrackEventType; e: CtEntry }[] = [];
let ev: ConntrackEvents;

beforeAll(() => {
  sh(["ip", "netns", "add", NS]);
  sh(["ip", "-n", NS, "link", "set", "lo", "up"]);
  // Conntrack tracks a namespace's traffic once a rule there uses it.
  sh(["ip", "netns", "exec", NS, "nft", "-f", "-"], "table inet eoct {\n chain out {\n type filter hook output priority 0\n ct state new counter\n }\n}\n");
  inNetns(() => {
    ct = new Conntrack();
    ev = new ConntrackEvents(
      NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_UPDATE | NF_NETLINK_CONNTRACK_DESTROY,
      (type, e) => void events.push({ type, e }),
    );
    rawHandle = nfct.symbols.nfct_open(CONNTRACK, 0) as Pointer;
  });
});

afterAll(() => {
  ct?.close();
  ev?.close();
  if (rawHandle) nfct.symbols.nfct_close(rawHandle);
  Bun.spawnSync(["ip", "netns", "del", NS]);
});

// ---- tests ----

test("constants match the installed C headers", () => {
  const names = Object.entries(bindings).filter((e): e is [string, number] => typeof e[1] === "number");
  const program = (includes: string[], list: [string, number][]) =>
    `${includes.map((i) => `#include <${i}>`).join("\n")}\n#include <stdio.h>\nint main(void) {\n${list
      .map(([n]) => `  printf("${n} %lld\\n", (long long)(${n}));`)
      .join("\n")}\n  return 0;\n}\n`;
  const run = (includes: string[], list: [string, number][]) => {
    const dir = sh(["mktemp", "-d"]).trim();
    try {
      writeFileSync(`${dir}/c.c`, program(includes, list));
      sh(["cc", "-o", `${dir}/c`, `${dir}/c.c`]);
      return sh([`${dir}/c`]);
    } finally {
      sh(["rm", "-rf", dir]);
    }
  };
  // The kernel's TCP header and the library's redefine the same TCP_CONNTRACK_* enum: two programs.
  const kernel = names.filter(([n]) => n.startsWith("IP_CT_"));
  const lib = names.filter(([n]) => !n.startsWith("IP_CT_"));
  const expected = (list: [string, number][]) => list.map(([n, v]) => `${n} ${v}\n`).join("");
  expect(run(["libnetfilter_conntrack/libnetfilter_conntrack.h", "libnetfilter_conntrack/libnetfilter_conntrack_tcp.h"], lib)).toBe(expected(lib));
  expect(run(["linux/netfilter/nf_conntrack_tcp.h"], kernel)).toBe(expected(kernel));
  expect(lib.length).toBeGreaterThan(50);
});

describe("get", () => {
  test("IPv4 TCP with source and destination NAT, found by either tuple", () => {
    const orig = tuple("tcp", "10.1.1.1", "10.2.2.2", rndPort(), 80);
    insert(orig, "10.1.1.1", "10.2.2.2", ...established("--dst-nat", "10.5.5.5:8080", "--src-nat", "10.9.9.9:7777"));
    const e = ct.get(orig);
    expect(e).not.toBeNull();
    expect(e!.orig).toEqual(orig);
    expect(e!.reply).toEqual(tuple("tcp", "10.5.5.5", "10.9.9.9", 8080, 7777));
    expect(e!.tcpState).toBe(TCP_CONNTRACK_ESTABLISHED);
    expect(e!.status & (IPS_SRC_NAT | IPS_DST_NAT | IPS_ASSURED | IPS_CONFIRMED)).toBe(IPS_SRC_NAT | IPS_DST_NAT | IPS_ASSURED | IPS_CONFIRMED);
    expect(e!.timeout).toBeGreaterThan(90);
    expect(e!.timeout).toBeLessThanOrEqual(100);
    expect([e!.zone, e!.mark, e!.helper]).toEqual([0, 0, null]);
    expect(offloadable(e!)).toEqual({ ok: true });

    // The tuple of a reply-direction packet finds the same entry.
    const byReply = ct.get(e!.reply);
    expect(byReply?.id).toBe(e!.id);
    expect(byReply?.orig).toEqual(orig);
  });

  test("IPv6 UDP with destination NAT", () => {
    const orig = tuple("udp", "fd00::1", "fd00::2", rndPort(), 53);
    insert(orig, "fd00::1", "fd00::2", "-t", "100", "--dst-nat", "[fd00::99]:5353", "-m", "42");
    const e = ct.get(orig);
    expect(e?.orig).toEqual(orig);
    expect(e?.reply).toEqual(tuple("udp", "fd00::99", "fd00::1", 5353, orig.sport));
    expect(e?.tcpState).toBeNull();
    expect(e?.mark).toBe(42);
    expect(e!.status & IPS_DST_NAT).toBe(IPS_DST_NAT);
    // UDP is offloadable once confirmed, even before a reply.
    expect(offloadable(e!)).toEqual({ ok: true });
  });

  test("a missing tuple gives null", () => {
    expect(ct.get(tuple("tcp", "10.77.0.1", "10.77.0.2", rndPort(), 1))).toBeNull();
    expect(ct.get(tuple("udp", "fd00::77", "fd00::78", rndPort(), 1))).toBeNull();
  });

  test("zones: an entry in zone 7 is found only in zone 7", () => {
    const orig = tuple("tcp", "10.1.1.7", "10.2.2.7", rndPort(), 443);
    insert(orig, "10.1.1.7", "10.2.2.7", ...established("-w", "7"));
    expect(ct.get(orig)).toBeNull();
    const e = ct.get(orig, 7);
    expect(e?.zone).toBe(7);
    expect(ct.refresh(e!, 300)).toBe(true);
    expect(ct.get(orig, 7)!.timeout).toBeGreaterThan(290);
  });
});

test("offloadable: TCP only when ESTABLISHED", () => {
  const orig = tuple("tcp", "10.1.1.3", "10.2.2.3", rndPort(), 80);
  insert(orig, "10.1.1.3", "10.2.2.3", "--state", "SYN_SENT", "-t", "100");
  const e = ct.get(orig)!;
  expect(e.tcpState).toBe(TCP_CONNTRACK_SYN_SENT);
  expect(offloadable(e)).toEqual({ ok: false, reason: "TCP state SYN_SENT, not ESTABLISHED" });
});

describe("offloadable rules on entries the CLI cannot make", () => {
  const base: CtEntry = {
    id: 1,
    orig: tuple("tcp", "10.0.0.1", "10.0.0.2", 1, 2),
    reply: tuple("tcp", "10.0.0.2", "10.0.0.1", 2, 1),
    zone: 0,
    mark: 0,
    status: IPS_CONFIRMED | IPS_ASSURED,
    tcpState: TCP_CONNTRACK_ESTABLISHED,
    helper: null,
    timeout: 100,
  };
  const reason = (e: Partial<CtEntry>) => {
    const r = offloadable({ ...base, ...e });
    return r.ok ? "ok" : r.reason;
  };
  test("each rule", () => {
    expect(reason({})).toBe("ok");
    expect(reason({ helper: "ftp" })).toBe("uses conntrack helper ftp");
    expect(reason({ status: base.status | IPS_HELPER })).toBe("uses conntrack helper (unnamed)");
    expect(reason({ status: base.status | IPS_SEQ_ADJUST })).toBe("TCP sequence numbers adjusted by a helper");
    expect(reason({ status: base.status | IPS_DYING })).toBe("entry is dying");
    expect(reason({ status: IPS_ASSURED })).toBe("entry not confirmed yet");
    expect(reason({ status: base.status | IPS_OFFLOAD })).toBe("already offloaded by the kernel flowtable");
    expect(reason({ status: base.status | IPS_UNTRACKED })).toBe("NAT clash entry");
    expect(reason({ tcpState: TCP_CONNTRACK_CLOSE })).toBe("TCP state CLOSE, not ESTABLISHED");
    const icmp = { ...base.orig, proto: 1 };
    expect(reason({ orig: icmp, reply: icmp, tcpState: null })).toBe("protocol 1 is not offloaded");
  });
});

test("defaultTimeout follows the sysctls", () => {
  const sysctl = (n: string) => parseInt(readFileSync(`/proc/sys/net/netfilter/nf_conntrack_${n}`, "utf8"), 10);
  const tcp: CtEntry = {
    id: 1, orig: tuple("tcp", "10.0.0.1", "10.0.0.2", 1, 2), reply: tuple("tcp", "10.0.0.2", "10.0.0.1", 2, 1),
    zone: 0, mark: 0, status: IPS_CONFIRMED, tcpState: TCP_CONNTRACK_ESTABLISHED, helper: null, timeout: 0,
  };
  const udp: CtEntry = { ...tcp, orig: { ...tcp.orig, proto: 17 }, reply: { ...tcp.reply, proto: 17 }, tcpState: null };
  expect(defaultTimeout(tcp)).toBe(sysctl("tcp_timeout_established"));
  expect(defaultTimeout({ ...tcp, tcpState: TCP_CONNTRACK_CLOSE })).toBe(sysctl("tcp_timeout_close"));
  expect(defaultTimeout({ ...tcp, tcpState: TCP_CONNTRACK_SYN_SENT })).toBe(sysctl("tcp_timeout_syn_sent"));
  expect(defaultTimeout(udp)).toBe(sysctl("udp_timeout"));
  expect(defaultTimeout({ ...udp, status: IPS_CONFIRMED | IPS_ASSURED })).toBe(sysctl("udp_timeout_stream"));
});

test("refresh sets the timeout; false once the entry is gone", () => {
  const orig = tuple("udp", "10.1.1.4", "10.2.2.4", rndPort(), 4000);
  insert(orig, "10.1.1.4", "10.2.2.4", "-t", "30");
  const e = ct.get(orig)!;
  expect(e.timeout).toBeLessThanOrEqual(30);
  expect(ct.refresh(e, 5000)).toBe(true);
  const after = ct.get(orig)!.timeout;
  expect(after).toBeGreaterThan(4990);
  expect(after).toBeLessThanOrEqual(5000);
  expect(conntrackCli("-L", "-p", "udp", "--orig-src", "10.1.1.4")).toMatch(/udp\s+17\s+(499\d|5000)\s/);
  conntrackCli("-D", "-p", "udp", "--orig-src", "10.1.1.4");
  expect(ct.refresh(e, 5000)).toBe(false);
  expect(ct.setOffloaded({ ...e, orig: { ...e.orig, proto: 6 }, reply: { ...e.reply, proto: 6 } })).toBe(false);
});

test("setOffloaded makes TCP window tracking liberal in both directions (a real connection)", async () => {
  // Entries made with `conntrack -I` start liberal already: use a real TCP connection on lo.
  const port = rndPort();
  const orig = tuple("tcp", "127.0.0.1", "127.0.0.1", port + 1, port);
  const inNs = (cmd: string[], stdin: "pipe" | "ignore") =>
    Bun.spawn(["ip", "netns", "exec", NS, ...cmd], { stdin, stdout: "ignore", stderr: "ignore" });
  const server = inNs(["socat", "-u", `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`, "/dev/null"], "ignore");
  const client = inNs(["socat", "-u", "-", `TCP:127.0.0.1:${port},sourceport=${port + 1},retry=40,interval=0.05`], "pipe");
  try {
    let e: CtEntry | null = null;
    for (let i = 0; i < 100 && e?.tcpState !== TCP_CONNTRACK_ESTABLISHED; i++) {
      await Bun.sleep(20);
      e = ct.get(orig);
    }
    expect(e?.tcpState).toBe(TCP_CONNTRACK_ESTABLISHED);
    const before = tcpFlags(rawHandle, orig)!;
    expect(before[0] & IP_CT_TCP_FLAG_BE_LIBERAL).toBe(0);
    expect(before[1] & IP_CT_TCP_FLAG_BE_LIBERAL).toBe(0);
    expect(ct.setOffloaded(e!)).toBe(true);
    const after = tcpFlags(rawHandle, orig)!;
    expect(after[0] & IP_CT_TCP_FLAG_BE_LIBERAL).toBe(IP_CT_TCP_FLAG_BE_LIBERAL);
    expect(after[1] & IP_CT_TCP_FLAG_BE_LIBERAL).toBe(IP_CT_TCP_FLAG_BE_LIBERAL);
    // Other flag bits (e.g. window scaling seen) are left alone.
    expect(after[0] & ~IP_CT_TCP_FLAG_BE_LIBERAL).toBe(before[0]);
    expect(after[1] & ~IP_CT_TCP_FLAG_BE_LIBERAL).toBe(before[1]);
    const again = ct.get(orig)!;
    expect([again.id, again.tcpState, again.reply, again.status]).toEqual([e!.id, e!.tcpState, e!.reply, e!.status]);
    // UDP has no window: nothing to do.
    expect(ct.setOffloaded({ ...e!, orig: { ...e!.orig, proto: 17 } })).toBe(true);
  } finally {
    client.kill();
    server.kill();
    await Promise.all([client.exited, server.exited]);
  }
});

describe("events", () => {
  test("new, update and destroy arrive through drain() without blocking", () => {
    ev.drain();
    events.length = 0;
    const t0 = performance.now();
    expect(ev.drain()).toBe(0); // nothing queued: returns at once
    expect(performance.now() - t0).toBeLessThan(50);
    expect(ev.overflowed).toBe(false);

    const orig = tuple("tcp", "10.1.1.6", "10.2.2.6", rndPort(), 8443);
    insert(orig, "10.1.1.6", "10.2.2.6", ...established("--src-nat", "10.9.9.6:6000"));
    conntrackCli("-U", "-p", "tcp", "--orig-src", "10.1.1.6", "-t", "77");
    conntrackCli("-D", "-p", "tcp", "--orig-src", "10.1.1.6");
    expect(ev.drain()).toBe(3);
    expect(events.map((x) => x.type)).toEqual(["new", "update", "destroy"]);
    for (const { e } of events) {
      expect(e.orig).toEqual(orig);
      expect(e.reply).toEqual(tuple("tcp", "10.2.2.6", "10.9.9.6", 8443, 6000));
    }
    expect(events[0]!.e.id).toBe(events[2]!.e.id);
    expect(events[1]!.e.timeout).toBeLessThanOrEqual(77);
    expect(ev.drain()).toBe(0);
  });

  test("a handler error is rethrown after the queue is drained", () => {
    const seen: number[] = [];
    const failing = inNetns(
      () =>
        new ConntrackEvents(NF_NETLINK_CONNTRACK_NEW, (_t, e) => {
          seen.push(e.orig.sport);
          throw new Error("handler failed");
        }),
    );
    try {
      const p1 = rndPort();
      const p2 = p1 + 1;
      insert(tuple("udp", "10.1.1.8", "10.2.2.8", p1, 9), "10.1.1.8", "10.2.2.8", "-t", "50");
      insert(tuple("udp", "10.1.1.8", "10.2.2.8", p2, 9), "10.1.1.8", "10.2.2.8", "-t", "50");
      expect(() => failing.drain()).toThrow("handler failed");
      expect(seen).toEqual([p1, p2]);
      expect(failing.drain()).toBe(0);
    } finally {
      failing.close();
    }
  });

  test("a socket overflow (ENOBUFS) is reported, and reading goes on", () => {
    let count = 0;
    const flood = inNetns(() => new ConntrackEvents(NF_NETLINK_CONNTRACK_NEW, () => void count++, 64 * 1024));
    try {
      // Each UDP datagram from a new socket to a new port is a new connection: far more NEW
      // events than the socket buffer holds.
      sh(["ip", "netns", "exec", NS, "bash", "-c", "for p in $(seq 20000 24999); do echo x 2>/dev/null >/dev/udp/127.0.0.1/$p; done"]);
      const n = flood.drain();
      expect(flood.overflowed).toBe(true);
      expect(n).toBe(count);
      expect(n).toBeLessThan(5000);
      // The socket still works afterwards.
      insert(tuple("udp", "10.1.1.9", "10.2.2.9", rndPort(), 9), "10.1.1.9", "10.2.2.9", "-t", "50");
      expect(flood.drain()).toBe(1);
      expect(flood.overflowed).toBe(false);
    } finally {
      flood.close();
    }
  });
});

test("closed handles fail with a clear error", () => {
  const c = inNetns(() => new Conntrack());
  c.close();
  c.close();
  expect(() => c.get(tuple("tcp", "10.0.0.1", "10.0.0.2", 1, 2))).toThrow("conntrack: query on a closed handle");
});
