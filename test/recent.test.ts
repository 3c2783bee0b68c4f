// The ring of recent conntrack entries (src/recent.ts): found by either tuple while young, taken
// out when found, the oldest replaced when full, and a newer event replaces an older one.
import { expect, test } from "bun:test";
import type { CtEntry } from "../src/conntrack.ts";
import { RecentEntries } from "../src/recent.ts";

const addr = (...b: number[]) => {
  const a = new Uint8Array(16);
  a.set(b);
  return a;
};

function entry(sport: number, status = 0x8): CtEntry {
  return {
    id: sport, zone: 0, mark: 0, status, tcpState: null, helper: null, timeout: 30,
    orig: { family: 2, proto: 17, src: addr(10, 0, 0, 2), dst: addr(10, 1, 0, 2), sport, dport: 53 },
    reply: { family: 2, proto: 17, src: addr(10, 1, 0, 2), dst: addr(10, 1, 0, 1), sport: 53, dport: sport + 1 },
  };
}

test("found by either tuple, with its direction, and only once", () => {
  const r = new RecentEntries(8, 1000);
  const e = entry(1000);
  r.put(e, 0);
  expect(r.take(e.reply, 10)).toEqual({ entry: e, dir: 1 });
  expect(r.take(e.orig, 10)).toBeNull();
  r.put(e, 0);
  expect(r.take(e.orig, 10)).toEqual({ entry: e, dir: 0 });
  expect(r.size).toBe(0);
});

test("too old: not used, and let go", () => {
  const r = new RecentEntries(8, 1000);
  const e = entry(1000);
  r.put(e, 0);
  expect(r.take(e.orig, 1001)).toBeNull();
  expect(r.size).toBe(0);
});

test("a newer event of the connection replaces the older one", () => {
  const r = new RecentEntries(8, 1000);
  r.put(entry(1000, 0x8), 0);
  r.put(entry(1000, 0xe), 5);
  expect(r.size).toBe(1);
  expect(r.take(entry(1000).orig, 10)?.entry.status).toBe(0xe);
});

test("full: the oldest goes first; delete and clear forget", () => {
  const r = new RecentEntries(4, 1000);
  for (let p = 1000; p < 1006; p++) r.put(entry(p), p);
  expect(r.size).toBe(4);
  expect(r.take(entry(1000).orig, 2000)).toBeNull();
  expect(r.take(entry(1001).orig, 2000)).toBeNull();
  expect(r.take(entry(1002).orig, 2000)?.entry.id).toBe(1002);
  r.delete(entry(1003).reply);
  expect(r.take(entry(1003).orig, 2000)).toBeNull();
  r.clear();
  expect(r.size).toBe(0);
  expect(r.take(entry(1005).orig, 2000)).toBeNull();
});

test("an entry with a conntrack helper is not kept (its name has no room: looked up instead)", () => {
  const r = new RecentEntries(4, 1000);
  r.put({ ...entry(1000), helper: "ftp" }, 0);
  expect(r.size).toBe(0);
});

test("a capacity that is not a whole number is rounded down (slots index typed arrays)", () => {
  const r = new RecentEntries(2.9, 1000);
  for (let p = 1000; p < 1005; p++) r.put(entry(p), 0);
  expect(r.size).toBe(2);
  expect(r.take(entry(1004).reply, 1)?.entry.id).toBe(1004);
  expect(r.take(entry(1003).orig, 1)?.entry.id).toBe(1003);
});

test("once all entries are too old, the store is let go and starts empty", () => {
  const r = new RecentEntries(8, 1000);
  r.put(entry(1000), 0);
  r.releaseIfStale(500);
  expect(r.size).toBe(1);
  r.releaseIfStale(1001);
  expect(r.size).toBe(0);
  r.put(entry(1001), 2000);
  expect(r.take(entry(1001).orig, 2001)?.entry.id).toBe(1001);
});
