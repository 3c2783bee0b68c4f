// src/bpf.ts against the real kernel, with the small objects of test/fixtures.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { constants } from "node:os";
import { BPF_NOEXIST } from "../ffi/libbpf.ts";
import { monotonicNs } from "../ffi/libc.ts";
import { BpfError, BpfObject, RingBuffer, testRun } from "../src/bpf.ts";
import { buildFixture, buildMini, decodeMiniEvent, miniParams, type MiniObject, type TestObject } from "./fixtures/mini.ts";

const { E2BIG, EEXIST, EINVAL, ENOENT } = constants.errno;
const XDP_DROP = 1;
const XDP_PASS = 2;

let mini: MiniObject;
let rejected: TestObject;
const open: BpfObject[] = [];

function load(opts: Parameters<typeof BpfObject.open>[1] = {}): BpfObject {
  const obj = BpfObject.open(mini.bytes, { name: "mini", ...opts });
  open.push(obj);
  obj.load();
  return obj;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(4));
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}
function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(new ArrayBuffer(8));
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}
function readU32(b: Uint8Array): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);
}
function readU64(b: Uint8Array): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, true);
}

/** A minimal Ethernet + IPv4 frame. */
function frame(len = 64): Uint8Array {
  const f = new Uint8Array(len);
  f.set([0x08, 0x00], 12);
  f[14] = 0x45;
  return f;
}

beforeAll(() => {
  mini = buildMini();
  rejected = buildFixture("rejected");
});

afterEach(() => {
  for (const obj of open.splice(0)) obj.close();
});

afterAll(() => {
  mini?.remove();
  rejected?.remove();
});

describe("maps", () => {
  test("update, lookup, delete", () => {
    const m = load().map("small");
    expect([m.name, m.keySize, m.valueSize, m.maxEntries]).toEqual(["small", 4, 8, 4]);
    const out = new Uint8Array(8);
    expect(m.lookup(u32(1), out)).toBe(false);
    m.update(u32(1), u64(11n));
    expect(m.lookup(u32(1), out)).toBe(true);
    expect(readU64(out)).toBe(11n);
    m.update(u32(1), u64(12n));
    m.lookup(u32(1), out);
    expect(readU64(out)).toBe(12n);
    expect(() => m.update(u32(1), u64(13n), BPF_NOEXIST)).toThrow(expect.objectContaining({ errno: EEXIST }));
    expect(m.delete(u32(1))).toBe(true);
    expect(m.delete(u32(1))).toBe(false);
    expect(m.lookup(u32(1), out)).toBe(false);
  });

  test("a full hash map refuses a new key with E2BIG", () => {
    const m = load().map("small");
    for (let i = 0; i < 4; i++) m.update(u32(i), u64(BigInt(i)));
    let err: unknown;
    try {
      m.update(u32(4), u64(4n));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    expect((err as BpfError).errno).toBe(E2BIG);
    expect((err as BpfError).message).toBe("BPF map small is full (4 entries): Argument list too long (E2BIG)");
    m.update(u32(3), u64(33n)); // existing keys still update
  });

  test("keys() and dump() return every entry", () => {
    const m = load().map("small");
    for (const k of [7, 3, 9]) m.update(u32(k), u64(BigInt(k * 10)));
    expect(m.keys(4).map(readU32).sort()).toEqual([3, 7, 9]);
    const d = m.dump();
    expect(d.count).toBe(3);
    const entries = new Map<number, bigint>();
    for (let i = 0; i < d.count; i++) entries.set(readU32(d.keys.subarray(i * 4)), readU64(d.values.subarray(i * 8)));
    expect(entries).toEqual(new Map([[3, 30n], [7, 70n], [9, 90n]]));
  });

  test("dump() into given buffers: the entries land there; buffers too small are refused", () => {
    const m = load().map("resizable");
    for (const k of [5, 1]) m.update(u32(k), u64(BigInt(k * 10)));
    const into = { keys: new Uint8Array(16 * 4), values: new Uint8Array(16 * 8) };
    const d = m.dump({ limit: 16, into });
    expect(d.count).toBe(2);
    expect(d.values.buffer).toBe(into.values.buffer);
    const entries = new Map<number, bigint>();
    for (let i = 0; i < d.count; i++) entries.set(readU32(into.keys.subarray(i * 4)), readU64(into.values.subarray(i * 8)));
    expect(entries).toEqual(new Map([[1, 10n], [5, 50n]]));
    expect(() => m.dump({ limit: 16, into: { keys: new Uint8Array(4), values: into.values } })).toThrow(expect.objectContaining({ errno: EINVAL }));
    expect(() => load().map("small").dump({ from: 1 })).not.toThrow(); // u32 keys
  });

  test("wrong key or value sizes are refused before reaching the kernel", () => {
    const m = load().map("small");
    expect(() => m.update(u64(1n), u64(1n))).toThrow(expect.objectContaining({ errno: EINVAL }));
    expect(() => m.update(u32(1), u32(1))).toThrow(expect.objectContaining({ errno: EINVAL }));
    expect(() => m.lookup(u32(1), new Uint8Array(4))).toThrow(expect.objectContaining({ errno: EINVAL }));
    expect(() => m.keys(8)).toThrow(expect.objectContaining({ errno: EINVAL }));
  });

  test("maxEntries resizes a map before load", () => {
    expect(load().map("resizable").maxEntries).toBe(16);
    const m = load({ maxEntries: { resizable: 20_000 } }).map("resizable");
    expect(m.maxEntries).toBe(20_000);
    expect(() => BpfObject.open(mini.bytes, { maxEntries: { nosuch: 1 } })).toThrow(
      "BPF object offload has no map named nosuch",
    );
  });

  test("20,000 updates from reused small buffers land every key", () => {
    const m = load({ maxEntries: { resizable: 20_000 } }).map("resizable");
    // Small inline typed arrays, reused as a hot loop would: the case that loses keys when an FFI
    // layer passes their (stale) addresses straight to C.
    const key = new Uint8Array(4);
    const value = new Uint8Array(8);
    const kv = new DataView(key.buffer);
    const vv = new DataView(value.buffer);
    for (let i = 0; i < 20_000; i++) {
      kv.setUint32(0, i, true);
      vv.setBigUint64(0, BigInt(i) * 3n, true);
      m.update(key, value);
    }
    expect(() => m.update(u32(20_000), u64(0n))).toThrow(expect.objectContaining({ errno: E2BIG }));
    const out = new Uint8Array(8);
    let found = 0;
    for (let i = 0; i < 20_000; i++) {
      kv.setUint32(0, i, true);
      if (m.lookup(key, out) && readU64(out) === BigInt(i) * 3n) found++;
    }
    expect(found).toBe(20_000);
    expect(m.keys(4).length).toBe(20_000);
    expect(m.dump().count).toBe(20_000);
  });
});

describe("programs", () => {
  test("testRun: default .rodata params", () => {
    const obj = load();
    const r = testRun(obj.programFd("mini_xdp"), frame(), { repeat: 3 });
    expect(r.retval).toBe(XDP_PASS);
    expect(r.data).toEqual(frame());
    expect(r.durationNs).toBeGreaterThanOrEqual(0);
    expect(testRun(obj.programFd("mini_tc"), frame()).retval).toBe(0);
  });

  test("params are written into .rodata before load and seen by the program", () => {
    const obj = load({ params: miniParams(XDP_DROP, 0xab) });
    const r = testRun(obj.programFd("mini_xdp"), frame(100));
    expect(r.retval).toBe(XDP_DROP);
    expect(r.data.length).toBe(100);
    expect(r.data[0]).toBe(0xab);
    expect(r.data.subarray(1)).toEqual(frame(100).subarray(1));
  });

  test("shareMapsOf: a second instance with its own params on the first one's maps", () => {
    const first = load({ params: miniParams(XDP_PASS, 1), maxEntries: { resizable: 64 } });
    const second = load({ params: miniParams(XDP_DROP, 2), shareMapsOf: first });
    // Its own .rodata: each instance keeps its verdict and mark.
    expect(testRun(first.programFd("mini_xdp"), frame()).retval).toBe(XDP_PASS);
    expect(testRun(second.programFd("mini_xdp"), frame()).retval).toBe(XDP_DROP);
    // One map: written through the first, read through the second, at the first one's size.
    first.map("resizable").update(u32(5), u64(55n));
    const out = new Uint8Array(new ArrayBuffer(8));
    expect(second.map("resizable").lookup(u32(5), out)).toBe(true);
    expect(readU64(out)).toBe(55n);
    expect(second.map("resizable").maxEntries).toBe(64);
    // One ring buffer: both instances' events come out of the first one's.
    const marks: number[] = [];
    const rb = new RingBuffer(first.map("events"), (d) => marks.push(decodeMiniEvent(d).mark));
    try {
      rb.poll(0);
      marks.length = 0;
      testRun(first.programFd("mini_xdp"), frame());
      testRun(second.programFd("mini_xdp"), frame());
      expect(rb.poll(0)).toBe(2);
      expect(marks).toEqual([1, 2]);
    } finally {
      rb.close();
    }
  });

  test("shareMapsOf an object not loaded yet: a clear error", () => {
    const first = BpfObject.open(mini.bytes, { name: "mini" });
    open.push(first);
    expect(() => BpfObject.open(mini.bytes, { shareMapsOf: first })).toThrow(/^BPF object mini: map \w+ used before load\(\)$/);
  });

  test("testRun with an xdp_md context", () => {
    const obj = load();
    const ctx = new Uint8Array(24); // struct xdp_md: data, data_end, ... (offsets into the frame)
    new DataView(ctx.buffer).setUint32(4, 64, true);
    const r = testRun(obj.programFd("mini_xdp"), frame(), { ctxIn: ctx });
    expect(r.retval).toBe(XDP_PASS);
    expect(r.ctxOut?.length).toBe(24);
  });

  test("params larger than .rodata are refused", () => {
    expect(() => BpfObject.open(mini.bytes, { params: new Uint8Array(9) })).toThrow(
      "parameters of 9 bytes do not fit its .rodata (8 bytes)",
    );
  });

  test("unknown program", () => {
    expect(() => load().programFd("nosuch")).toThrow(expect.objectContaining({ errno: ENOENT }));
  });

  test("a program the verifier rejects: BpfError quoting the verifier", () => {
    const obj = BpfObject.open(rejected.bytes, { name: "rejected" });
    open.push(obj);
    let err: unknown;
    try {
      obj.load();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BpfError);
    const e = err as BpfError;
    expect(e.errno).toBe(constants.errno.EACCES);
    expect(e.message).toStartWith("BPF object rejected: load failed: Permission denied (EACCES)\n");
    expect(e.message).toContain("invalid access to packet");
    expect(e.log).toContain("prog 'rejected_xdp'");
  });

  test("bytes that are not a BPF object", () => {
    expect(() => BpfObject.open(new Uint8Array(64))).toThrow("BPF object offload: cannot open (not a valid BPF ELF object?)");
  });
});

describe("ring buffer", () => {
  test("delivers each sample, in a buffer valid during the call; timestamps are CLOCK_MONOTONIC", () => {
    const obj = load({ params: miniParams(XDP_PASS, 7) });
    const events: ReturnType<typeof decodeMiniEvent>[] = [];
    const rb = new RingBuffer(obj.map("events"), (d) => events.push(decodeMiniEvent(d)));
    try {
      expect(rb.poll()).toBe(0);
      const before = monotonicNs();
      testRun(obj.programFd("mini_xdp"), frame(64));
      testRun(obj.programFd("mini_xdp"), frame(80));
      const after = monotonicNs();
      expect(rb.poll(0)).toBe(2);
      expect(events.map((e) => [e.mark, e.len])).toEqual([[7, 64], [7, 80]]);
      for (const e of events) {
        expect(e.ns).toBeGreaterThanOrEqual(before);
        expect(e.ns).toBeLessThanOrEqual(after);
      }
      expect(rb.poll()).toBe(0);
    } finally {
      rb.close();
      rb.close();
    }
  });

  test("poll(0, max) delivers at most max samples; the rest wait for the next poll, none lost", () => {
    const obj = load({ params: miniParams(XDP_PASS, 7) });
    const lens: number[] = [];
    const rb = new RingBuffer(obj.map("events"), (d) => lens.push(decodeMiniEvent(d).len));
    try {
      for (const len of [64, 70, 80, 90, 100]) testRun(obj.programFd("mini_xdp"), frame(len));
      expect(rb.poll(0, 2)).toBe(2);
      expect(rb.poll(0, 2)).toBe(2);
      expect(rb.poll(0, 2)).toBe(1);
      expect(rb.poll(0, 2)).toBe(0);
      expect(lens).toEqual([64, 70, 80, 90, 100]);
    } finally {
      rb.close();
    }
  });

  test("an exception in the callback comes out of poll(); close() from inside the callback", () => {
    const obj = load();
    let calls = 0;
    const rb = new RingBuffer(obj.map("events"), () => {
      calls++;
      if (calls === 1) throw new Error("boom");
      rb.close();
    });
    for (let i = 0; i < 3; i++) testRun(obj.programFd("mini_xdp"), frame());
    expect(() => rb.poll()).toThrow("boom");
    expect(rb.poll()).toBe(1);
    expect(calls).toBe(2);
    expect(() => rb.poll()).toThrow("BPF ring buffer events is closed");
  });
});
