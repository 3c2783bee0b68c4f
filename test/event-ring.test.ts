// The new-flow ring buffer grows with --max-flows, in powers of two between 256 KiB and 1 MiB.
import { expect, test } from "bun:test";
import { eventRingBytes } from "../src/daemon.ts";

test("ring size: a power of two, at least 16 bytes per flow, within bounds", () => {
  expect(eventRingBytes(1)).toBe(256 * 1024);
  expect(eventRingBytes(16384)).toBe(256 * 1024);
  expect(eventRingBytes(16385)).toBe(512 * 1024);
  expect(eventRingBytes(65536)).toBe(1024 * 1024);
  expect(eventRingBytes(131072)).toBe(1024 * 1024);
  expect(eventRingBytes(10_000_000)).toBe(1024 * 1024);
});
