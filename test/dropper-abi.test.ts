// src/dropper-abi.ts DROP_LAYOUT against the BTF of build/dropper.bpf.o, and `params` as the only
// variable of its .rodata at offset 0 (where BpfObject writes the load-time parameters).
import { beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { DROP_LAYOUT } from "../src/dropper-abi.ts";

const ROOT = join(import.meta.dir, "..");

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  members?: { name: string; bits_offset: number }[];
  vars?: { type_id: number; offset: number }[];
}

let types: BtfType[] = [];

function run(cmd: string[]): string {
  const r = Bun.spawnSync(cmd, { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

beforeAll(() => {
  run([process.execPath, "build.ts", "--bpf-only"]);
  types = (JSON.parse(run(["bpftool", "btf", "dump", "file", join(ROOT, "build", "dropper.bpf.o"), "-j"])) as { types: BtfType[] }).types;
});

for (const [name, layout] of Object.entries(DROP_LAYOUT)) {
  test(`struct ${name}: size and member offsets match the BTF`, () => {
    const structs = types.filter((t) => t.kind === "STRUCT" && t.name === name);
    expect(structs).toHaveLength(1);
    const s = structs[0]!;
    const offsets = Object.fromEntries((s.members ?? []).map((m) => [m.name, m.bits_offset / 8]));
    expect({ size: s.size, members: offsets }).toEqual({ size: layout.size, members: { ...layout.members } });
  });
}

test("params is the only variable of .rodata, at offset 0", () => {
  const rodata = types.find((t) => t.kind === "DATASEC" && t.name === ".rodata");
  expect(rodata?.vars).toHaveLength(1);
  expect(rodata!.vars![0]!.offset).toBe(0);
  const v = types.find((t) => t.id === rodata!.vars![0]!.type_id);
  expect(v?.name).toBe("params");
});
