import { expect, test } from "bun:test";
import { formatAddr, formatEndpoint } from "../src/addr.ts";

function v6(s: string): Uint8Array {
  // Expands a full (uncompressed) IPv6 address written as 8 hex words.
  const out = new Uint8Array(16);
  s.split(":").forEach((w, i) => {
    const n = parseInt(w, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  return out;
}

test("IPv4 uses the first four bytes", () => {
  expect(formatAddr(2, new Uint8Array([10, 200, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).toBe("10.200.1.2");
});

test("IPv6 compresses the longest zero run (RFC 5952)", () => {
  expect(formatAddr(10, v6("fd00:1:0:0:0:0:0:2"))).toBe("fd00:1::2");
  expect(formatAddr(10, v6("0:0:0:0:0:0:0:1"))).toBe("::1");
  expect(formatAddr(10, v6("0:0:0:0:0:0:0:0"))).toBe("::");
  expect(formatAddr(10, v6("2001:db8:0:1:0:0:0:1"))).toBe("2001:db8:0:1::1");
  expect(formatAddr(10, v6("2001:db8:1:2:3:4:5:6"))).toBe("2001:db8:1:2:3:4:5:6");
  expect(formatAddr(10, v6("2001:0:0:1:0:0:0:0"))).toBe("2001:0:0:1::");
});

test("endpoints bracket IPv6", () => {
  expect(formatEndpoint(10, v6("fd00:2:0:0:0:0:0:2"), 443)).toBe("[fd00:2::2]:443");
});
