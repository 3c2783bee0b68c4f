// The release build: `bun build.ts --target all` into a temporary directory gives the four
// binaries and a SHA256SUMS that `sha256sum -c` accepts; the arm64 (glibc) binary runs under
// qemu-user with Debian's arm64 C library, and its `check` reports the missing arm64 libraries
// as fail lines instead of crashing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import pkg from "../package.json" with { type: "json" };

const ROOT = join(import.meta.dir, "..");
const NAMES = ["ebpf-offloader-linux-x64", "ebpf-offloader-linux-arm64", "ebpf-offloader-linux-x64-musl", "ebpf-offloader-linux-arm64-musl"];
const EM_X86_64 = 62;
const EM_AARCH64 = 183;

let out: string;
beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), `eo-release-${process.pid}-`));
  // build.ts runs `bun build`: the bun running this test must be the one on PATH.
  const r = Bun.spawnSync([process.execPath, "build.ts", "--target", "all", "--outdir", out], {
    cwd: ROOT,
    env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` },
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`bun build.ts --target all: ${r.stderr.toString()}`);
}, 120_000);
afterAll(() => rmSync(out, { recursive: true, force: true }));

test("SHA256SUMS lists the four binaries and matches them", () => {
  const sums = readFileSync(join(out, "SHA256SUMS"), "utf8");
  expect(sums.trimEnd().split("\n").map((l) => l.split("  ")[1])).toEqual(NAMES);
  expect(sums).toMatch(/^([0-9a-f]{64} {2}\S+\n)+$/);
  const r = Bun.spawnSync(["sha256sum", "-c", "--strict", "SHA256SUMS"], { cwd: out, stdout: "pipe", stderr: "pipe" });
  expect(r.stdout.toString()).toBe(NAMES.map((n) => `${n}: OK\n`).join(""));
  expect(r.exitCode).toBe(0);
});

test("each binary is for its architecture and C library", () => {
  for (const name of NAMES) {
    const head = Buffer.alloc(4096);
    const fd = openSync(join(out, name), "r");
    readSync(fd, head, 0, head.length, 0);
    closeSync(fd);
    expect(new DataView(head.buffer, head.byteOffset).getUint16(18, true)).toBe(name.includes("arm64") ? EM_AARCH64 : EM_X86_64);
    const arm = name.includes("arm64");
    const interp = name.includes("musl") ? `/lib/ld-musl-${arm ? "aarch64" : "x86_64"}.so.1` : arm ? "/lib/ld-linux-aarch64.so.1" : "/lib64/ld-linux-x86-64.so.2";
    expect(head.toString("latin1")).toContain(interp);
  }
});

const qemu = (args: string[]) =>
  Bun.spawnSync(["qemu-aarch64-static", "-L", "/usr/aarch64-linux-gnu", join(out, "ebpf-offloader-linux-arm64"), ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });

test("the arm64 binary runs: --version under qemu-user", () => {
  const r = qemu(["--version"]);
  expect(r.stderr.toString()).toBe("");
  expect(r.stdout.toString()).toBe(`${pkg.version}\n`);
  expect(r.exitCode).toBe(0);
}, 30_000);

test("the arm64 binary's check without arm64 libraries: fail lines, exit 1, no crash", () => {
  const r = qemu(["check", "--json", "lo"]);
  const rep = JSON.parse(r.stdout.toString()) as { ok: boolean; checks: { item: string; status: string; detail: string }[] };
  expect(rep.ok).toBe(false);
  expect(rep.checks.find((c) => c.item === "libbpf")).toMatchObject({ status: "fail", detail: expect.stringContaining("libbpf.so.1") });
  expect(rep.checks.find((c) => c.item === "kernel")?.status).toBe("ok");
  expect(r.exitCode).toBe(1);
}, 30_000);
