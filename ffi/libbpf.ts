// Thin bindings to libbpf 1.x: the symbol table, constants and encoders for the opts structs.
// Layouts are those of libbpf 1.1 on 64-bit Linux; each opts struct starts with its own size
// (`sz`), which newer libbpf versions accept unchanged.
import { dlopen, type Pointer } from "bun:ffi";
import { findLibrary } from "./library-path.ts";

export const libbpf = dlopen(findLibrary(["libbpf.so.1"]), {
  libbpf_set_print: { args: ["ptr"], returns: "ptr" },
  libbpf_num_possible_cpus: { args: [], returns: "i32" },
  libbpf_strerror: { args: ["i32", "ptr", "usize"], returns: "i32" },

  bpf_object__open_mem: { args: ["ptr", "usize", "ptr"], returns: "ptr" },
  bpf_object__load: { args: ["ptr"], returns: "i32" },
  bpf_object__close: { args: ["ptr"], returns: "void" },
  bpf_object__find_map_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_object__find_program_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_object__next_map: { args: ["ptr", "ptr"], returns: "ptr" },

  bpf_map__name: { args: ["ptr"], returns: "cstring" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_map__type: { args: ["ptr"], returns: "i32" },
  bpf_map__key_size: { args: ["ptr"], returns: "u32" },
  bpf_map__value_size: { args: ["ptr"], returns: "u32" },
  bpf_map__max_entries: { args: ["ptr"], returns: "u32" },
  bpf_map__set_max_entries: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__is_internal: { args: ["ptr"], returns: "bool" },
  bpf_map__initial_value: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_map__set_pin_path: { args: ["ptr", "cstring"], returns: "i32" },
  bpf_map__reuse_fd: { args: ["ptr", "i32"], returns: "i32" },

  bpf_obj_get: { args: ["cstring"], returns: "i32" },
  bpf_obj_get_info_by_fd: { args: ["i32", "ptr", "ptr"], returns: "i32" },

  bpf_program__fd: { args: ["ptr"], returns: "i32" },

  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
  bpf_map_lookup_elem: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_map_delete_elem: { args: ["i32", "ptr"], returns: "i32" },
  bpf_map_get_next_key: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  bpf_map_lookup_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },

  bpf_link_create: { args: ["i32", "i32", "i32", "ptr"], returns: "i32" },
  bpf_raw_tracepoint_open: { args: ["ptr", "i32"], returns: "i32" },
  bpf_xdp_query: { args: ["i32", "i32", "ptr"], returns: "i32" },
  bpf_tc_hook_create: { args: ["ptr"], returns: "i32" },
  bpf_tc_hook_destroy: { args: ["ptr"], returns: "i32" },
  bpf_tc_attach: { args: ["ptr", "ptr"], returns: "i32" },
  bpf_tc_detach: { args: ["ptr", "ptr"], returns: "i32" },
  bpf_tc_query: { args: ["ptr", "ptr"], returns: "i32" },

  ring_buffer__new: { args: ["i32", "ptr", "ptr", "ptr"], returns: "ptr" },
  ring_buffer__poll: { args: ["ptr", "i32"], returns: "i32" },
  ring_buffer__consume: { args: ["ptr"], returns: "i32" },
  ring_buffer__free: { args: ["ptr"], returns: "void" },
  ring_buffer__epoll_fd: { args: ["ptr"], returns: "i32" },

  bpf_prog_test_run_opts: { args: ["i32", "ptr"], returns: "i32" },
});

/** struct bpf_map_info: the leading fields read here (the kernel fills up to the length given). */
export const MAP_INFO_SIZE = 20;
export const MAP_INFO = { type: 0, keySize: 8, valueSize: 12, maxEntries: 16 } as const;

/** libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *fmt, va_list). */
export const PRINT_FN = { args: ["i32", "ptr", "ptr"], returns: "i32" } as const;
/** ring_buffer_sample_fn: int (*)(void *ctx, void *data, size_t size). */
export const RING_BUFFER_SAMPLE_FN = { args: ["ptr", "ptr", "usize"], returns: "i32" } as const;

export const LIBBPF_WARN = 0;

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export const BPF_MAP_TYPE_PERCPU_HASH = 5;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_LRU_PERCPU_HASH = 10;
export const BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21;

export const BPF_XDP = 37;
export const XDP_FLAGS_SKB_MODE = 1 << 1;
export const XDP_FLAGS_DRV_MODE = 1 << 2;

export const BPF_TC_INGRESS = 1 << 0;
export const BPF_TC_EGRESS = 1 << 1;
export const BPF_TC_F_REPLACE = 1 << 0;

function header(buf: Uint8Array, size: number): DataView {
  if (buf.byteLength < size) throw new RangeError(`opts buffer of ${buf.byteLength} bytes, need ${size}`);
  buf.fill(0, 0, size);
  const v = new DataView(buf.buffer, buf.byteOffset, size);
  v.setBigUint64(0, BigInt(size), true);
  return v;
}

/** struct bpf_object_open_opts (80 bytes). `objectName` points to a NUL-terminated string. */
export const OBJECT_OPEN_OPTS_SIZE = 80;
export function encodeObjectOpenOpts(buf: Uint8Array, objectName: Pointer): void {
  header(buf, OBJECT_OPEN_OPTS_SIZE).setBigUint64(8, BigInt(objectName), true);
}

/** struct bpf_map_batch_opts (24 bytes), no flags. */
export const MAP_BATCH_OPTS_SIZE = 24;
export function encodeMapBatchOpts(buf: Uint8Array): void {
  header(buf, MAP_BATCH_OPTS_SIZE);
}

/** struct bpf_link_create_opts (64 bytes): only `flags` (the XDP_FLAGS_* for an XDP link). */
export const LINK_CREATE_OPTS_SIZE = 64;
export function encodeLinkCreateOpts(buf: Uint8Array, flags: number): void {
  header(buf, LINK_CREATE_OPTS_SIZE).setUint32(8, flags, true);
}

/** struct bpf_xdp_query_opts (32 bytes): outputs only. */
export const XDP_QUERY_OPTS_SIZE = 32;
export function encodeXdpQueryOpts(buf: Uint8Array): void {
  header(buf, XDP_QUERY_OPTS_SIZE);
}
export interface XdpQueryResult {
  progId: number;
  drvProgId: number;
  hwProgId: number;
  skbProgId: number;
}
export function decodeXdpQueryOpts(buf: Uint8Array): XdpQueryResult {
  const v = new DataView(buf.buffer, buf.byteOffset, XDP_QUERY_OPTS_SIZE);
  return {
    progId: v.getUint32(8, true),
    drvProgId: v.getUint32(12, true),
    hwProgId: v.getUint32(16, true),
    skbProgId: v.getUint32(20, true),
  };
}

/** struct bpf_tc_hook (24 bytes). */
export const TC_HOOK_SIZE = 24;
export function encodeTcHook(buf: Uint8Array, ifindex: number, attachPoint: number): void {
  const v = header(buf, TC_HOOK_SIZE);
  v.setInt32(8, ifindex, true);
  v.setUint32(12, attachPoint, true);
}

/** struct bpf_tc_opts (32 bytes). Detach and query want progFd, flags and progId all zero. */
export const TC_OPTS_SIZE = 32;
export function encodeTcOpts(
  buf: Uint8Array,
  o: { progFd: number; flags: number; handle: number; priority: number },
): void {
  const v = header(buf, TC_OPTS_SIZE);
  v.setInt32(8, o.progFd, true);
  v.setUint32(12, o.flags, true);
  v.setUint32(20, o.handle, true);
  v.setUint32(24, o.priority, true);
}
export function decodeTcOptsProgId(buf: Uint8Array): number {
  return new DataView(buf.buffer, buf.byteOffset, TC_OPTS_SIZE).getUint32(16, true);
}

/** struct bpf_test_run_opts (80 bytes). Pointers are absolute addresses, 0 for none. */
export const TEST_RUN_OPTS_SIZE = 80;
export interface TestRunOptsIn {
  dataIn: number;
  dataSizeIn: number;
  dataOut: number;
  dataSizeOut: number;
  ctxIn: number;
  ctxSizeIn: number;
  ctxOut: number;
  ctxSizeOut: number;
  repeat: number;
}
export function encodeTestRunOpts(buf: Uint8Array, o: TestRunOptsIn): void {
  const v = header(buf, TEST_RUN_OPTS_SIZE);
  v.setBigUint64(8, BigInt(o.dataIn), true);
  v.setBigUint64(16, BigInt(o.dataOut), true);
  v.setUint32(24, o.dataSizeIn, true);
  v.setUint32(28, o.dataSizeOut, true);
  v.setBigUint64(32, BigInt(o.ctxIn), true);
  v.setBigUint64(40, BigInt(o.ctxOut), true);
  v.setUint32(48, o.ctxSizeIn, true);
  v.setUint32(52, o.ctxSizeOut, true);
  v.setInt32(60, o.repeat, true);
}
export interface TestRunOptsOut {
  dataSizeOut: number;
  ctxSizeOut: number;
  retval: number;
  durationNs: number;
}
export function decodeTestRunOpts(buf: Uint8Array): TestRunOptsOut {
  const v = new DataView(buf.buffer, buf.byteOffset, TEST_RUN_OPTS_SIZE);
  return {
    dataSizeOut: v.getUint32(28, true),
    ctxSizeOut: v.getUint32(52, true),
    retval: v.getUint32(56, true),
    durationNs: v.getUint32(64, true),
  };
}
