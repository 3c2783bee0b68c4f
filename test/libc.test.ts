// ffi/libc.ts and ffi/library-path.ts on this machine.
import { expect, test } from "bun:test";
import { closeSync, openSync } from "node:fs";
import { constants } from "node:os";
import { findLibrary, LibraryNotFoundError } from "../ffi/library-path.ts";
import { close, describeErrno, errno, errnoName, getpid, ifIndexToName, ifNameToIndex, libc, monotonicNs, OsError, setNonBlocking } from "../ffi/libc.ts";

test("errno names and texts", () => {
  expect(errnoName(constants.errno.EOPNOTSUPP)).toBe("EOPNOTSUPP");
  expect(errnoName(-constants.errno.E2BIG)).toBe("E2BIG");
  expect(errnoName(constants.errno.EAGAIN)).toBe("EAGAIN");
  expect(errnoName(524)).toBe("ENOTSUPP");
  expect(describeErrno(constants.errno.ENOENT)).toBe("No such file or directory (ENOENT)");
});

test("errno() reads the calling thread's errno", () => {
  expect(libc.symbols.close(-1)).toBe(-1);
  expect(errno()).toBe(constants.errno.EBADF);
  expect(() => close(-1)).toThrow(new OsError("close(-1)", constants.errno.EBADF));
});

test("monotonicNs() is CLOCK_MONOTONIC in ns and moves forward", async () => {
  const a = monotonicNs();
  await Bun.sleep(20);
  const b = monotonicNs();
  expect(b - a).toBeGreaterThanOrEqual(19_000_000n);
  expect(b - a).toBeLessThan(2_000_000_000n);
});

test("interface names and indexes", () => {
  expect(ifNameToIndex("lo")).toBe(1);
  expect(ifIndexToName(1)).toBe("lo");
  expect(ifNameToIndex("nosuchif0")).toBe(0);
  expect(ifNameToIndex("a-name-too-long-for-linux")).toBe(0);
  expect(ifNameToIndex("")).toBe(0);
  expect(ifIndexToName(0x7ffffff0)).toBeNull();
});

test("setNonBlocking", () => {
  const fd = openSync("/dev/null", "r");
  try {
    const F_GETFL = 3;
    expect(libc.symbols.fcntl(fd, F_GETFL, 0) & 0o4000).toBe(0);
    setNonBlocking(fd);
    expect(libc.symbols.fcntl(fd, F_GETFL, 0) & 0o4000).toBe(0o4000);
  } finally {
    closeSync(fd);
  }
  expect(() => setNonBlocking(-1)).toThrow(expect.objectContaining({ errno: constants.errno.EBADF }));
});

test("getpid", () => {
  expect(getpid()).toBe(process.pid);
});

test("findLibrary: absolute path, or a clear error", () => {
  expect(findLibrary(["libbpf.so.1"])).toStartWith("/");
  expect(() => findLibrary(["libnosuch.so.9"])).toThrow(LibraryNotFoundError);
});
