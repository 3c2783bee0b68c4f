// The libbpf symbols only `check` uses (version and feature probes, loading a raw instruction
// array), bound beside ffi/libbpf.ts so that the daemon's symbol table stays as it is. Importing
// this module throws LibraryNotFoundError when libbpf is missing: import it lazily.
import { dlopen, ptr } from "bun:ffi";
import { cString, ffiBytes } from "../ffi/buffer.ts";
import { findLibrary } from "../ffi/library-path.ts";

export const libbpfPath = findLibrary(["libbpf.so.1"]);

const probe = dlopen(libbpfPath, {
  libbpf_major_version: { args: [], returns: "u32" },
  libbpf_minor_version: { args: [], returns: "u32" },
  libbpf_version_string: { args: [], returns: "cstring" },
  /** 1: supported, 0: not, < 0: -errno (the probe itself failed, e.g. EPERM). */
  libbpf_probe_bpf_map_type: { args: ["i32", "ptr"], returns: "i32" },
  /** (prog_type, name, license, insns, insn_cnt, opts): a program fd or -errno. */
  bpf_prog_load: { args: ["i32", "ptr", "ptr", "ptr", "usize", "ptr"], returns: "i32" },
}).symbols;

export const BPF_PROG_TYPE_SCHED_CLS = 3;
export const BPF_PROG_TYPE_XDP = 6;

/** enum bpf_map_type names, for the map types a datapath object may use. */
export const MAP_TYPE_NAMES: Readonly<Record<number, string>> = {
  1: "hash", 2: "array", 3: "prog_array", 4: "perf_event_array", 5: "percpu_hash", 6: "percpu_array",
  9: "lru_hash", 10: "lru_percpu_hash", 11: "lpm_trie", 12: "array_of_maps", 13: "hash_of_maps",
  14: "devmap", 16: "cpumap", 17: "xskmap", 25: "devmap_hash", 27: "ringbuf",
};

export function libbpfVersion(): { major: number; minor: number; text: string } {
  return {
    major: probe.libbpf_major_version(),
    minor: probe.libbpf_minor_version(),
    text: String(probe.libbpf_version_string() ?? ""),
  };
}

export function probeMapType(type: number): number {
  return probe.libbpf_probe_bpf_map_type(type, null);
}

const name = cString("eo_check");
const license = cString("GPL");
const insns = ffiBytes(16);

/**
 * Loads a two-instruction program (`r0 = verdict; exit`) of the given type: a file descriptor the
 * caller closes, or -errno.
 */
export function loadTrivialProgram(progType: number, verdict: number): number {
  const v = new DataView(insns.buffer);
  insns.fill(0);
  v.setUint8(0, 0xb7); // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
  v.setInt32(4, verdict, true);
  v.setUint8(8, 0x95); // BPF_JMP | BPF_EXIT
  return probe.bpf_prog_load(progType, ptr(name), ptr(license), ptr(insns), 2, null);
}
