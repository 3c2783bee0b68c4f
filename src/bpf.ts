// A BPF object (programs + maps) loaded from an ELF image in memory, its maps, ring buffers and
// BPF_PROG_TEST_RUN. Buffers handed to C are allocated once on their own ArrayBuffer and kept
// referenced (pointers to small inline typed arrays can go stale; see the shared bun-ffi notes),
// which also keeps map updates and lookups free of allocations.
import { JSCallback, ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { constants } from "node:os";
import {
  BPF_ANY,
  BPF_MAP_TYPE_LRU_PERCPU_HASH,
  BPF_MAP_TYPE_PERCPU_ARRAY,
  BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
  BPF_MAP_TYPE_PERCPU_HASH,
  decodeTestRunOpts,
  encodeMapBatchOpts,
  encodeObjectOpenOpts,
  encodeTestRunOpts,
  libbpf,
  MAP_BATCH_OPTS_SIZE,
  MAP_INFO,
  MAP_INFO_SIZE,
  OBJECT_OPEN_OPTS_SIZE,
  RING_BUFFER_SAMPLE_FN,
  TEST_RUN_OPTS_SIZE,
} from "../ffi/libbpf.ts";
import { cString, ffiBytes } from "../ffi/buffer.ts";
import { close as closeFd, describeErrno, errno, libc } from "../ffi/libc.ts";
import { withLibbpfLog } from "./libbpf-log.ts";

const { ENOENT, E2BIG, EINTR, EINVAL } = constants.errno;
/** Lines of libbpf's log (the end of a verifier log) quoted in an error message. */
const LOG_TAIL_LINES = 20;

export class BpfError extends Error {
  override readonly name = "BpfError";

  constructor(
    message: string,
    readonly errno: number,
    /** What libbpf reported, e.g. the end of the verifier log of a rejected program. */
    readonly log: string = "",
    describe = true,
  ) {
    super(`${message}${describe ? `: ${errnoText(errno)}` : ""}${log ? `\n${log}` : ""}`);
  }

  /** A mistake of the caller (no such map, wrong size): the errno classifies it, the text says it. */
  static usage(message: string, errno: number): BpfError {
    return new BpfError(message, errno, "", false);
  }
}

/** libbpf's own error codes (LIBBPF_ERRNO__*, e.g. 4001 for a bad ELF) start here. */
const LIBBPF_ERRNO_START = 4000;
const errText = ffiBytes(256);

function errnoText(e: number): string {
  if (e < LIBBPF_ERRNO_START) return describeErrno(e);
  libbpf.symbols.libbpf_strerror(e, ptr(errText), errText.length);
  const end = errText.indexOf(0);
  return `${new TextDecoder().decode(errText.subarray(0, end < 0 ? errText.length : end))} (libbpf error ${e})`;
}

function logTail(log: readonly string[]): string {
  return log.join("").trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
}

export interface OpenOptions {
  /** max_entries overrides, by map name. */
  maxEntries?: Record<string, number>;
  /** Written at offset 0 of the object's .rodata before load (the `volatile const` params). */
  params?: Uint8Array;
  /** The object's name: libbpf prefixes internal map names with it. Default "offload". */
  name?: string;
  /**
   * Maps pinned as DIR/NAME in bpffs: at load libbpf reuses a compatible pinned map (keeping its
   * entries) and pins a new one otherwise; an incompatible pinned map makes load() fail.
   */
  pin?: { dir: string; maps: readonly string[] };
  /**
   * A loaded object of the same image whose maps this one uses instead of creating its own
   * (bpf_map__reuse_fd): another instance of the programs, with other load-time parameters, on
   * the same flows. Its read-only data stays its own.
   */
  shareMapsOf?: BpfObject;
}

export class BpfObject {
  private readonly maps = new Map<string, BpfMap>();
  private loaded = false;
  private closed = false;

  private constructor(
    private readonly handle: Pointer,
    readonly name: string,
    // libbpf reads the ELF image until load() and the name for the object's lifetime.
    private readonly image: Uint8Array,
    private readonly nameBuf: Uint8Array,
  ) {}

  static open(bytes: Uint8Array, opts: OpenOptions = {}): BpfObject {
    const name = opts.name ?? "offload";
    if (bytes.length === 0) throw BpfError.usage(`BPF object ${name}: empty image`, EINVAL);
    const image = ffiBytes(bytes.length);
    image.set(bytes);
    const nameBuf = cString(name);
    const openOpts = ffiBytes(OBJECT_OPEN_OPTS_SIZE);
    encodeObjectOpenOpts(openOpts, ptr(nameBuf));
    const handle = withLibbpfLog((log) => {
      const h = libbpf.symbols.bpf_object__open_mem(ptr(image), image.length, ptr(openOpts));
      if (h === null) {
        throw new BpfError(`BPF object ${name}: cannot open (not a valid BPF ELF object?)`, errno(), logTail(log));
      }
      return h as Pointer;
    });
    const obj = new BpfObject(handle, name, image, nameBuf);
    try {
      for (const [mapName, n] of Object.entries(opts.maxEntries ?? {})) obj.setMaxEntries(mapName, n);
      if (opts.params) obj.writeParams(opts.params);
      for (const mapName of opts.pin?.maps ?? []) obj.setPinPath(mapName, `${opts.pin!.dir}/${mapName}`);
      if (opts.shareMapsOf) obj.reuseMaps(opts.shareMapsOf);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  private findMap(mapName: string): Pointer {
    this.assertOpen();
    const m = libbpf.symbols.bpf_object__find_map_by_name(this.handle, cString(mapName));
    if (m === null) throw BpfError.usage(`BPF object ${this.name} has no map named ${mapName}`, ENOENT);
    return m as Pointer;
  }

  private setMaxEntries(mapName: string, n: number): void {
    const rc = libbpf.symbols.bpf_map__set_max_entries(this.findMap(mapName), n);
    if (rc < 0) throw new BpfError(`BPF map ${mapName}: cannot set max_entries to ${n}`, -rc);
  }

  private setPinPath(mapName: string, path: string): void {
    const rc = libbpf.symbols.bpf_map__set_pin_path(this.findMap(mapName), cString(path));
    if (rc < 0) throw new BpfError(`BPF map ${mapName}: cannot pin at ${path}`, -rc);
  }

  private reuseMaps(other: BpfObject): void {
    for (let m = this.nextMap(null); m !== null; m = this.nextMap(m)) {
      if (libbpf.symbols.bpf_map__is_internal(m)) continue;
      const mapName = String(libbpf.symbols.bpf_map__name(m) ?? "");
      const rc = libbpf.symbols.bpf_map__reuse_fd(m, other.map(mapName).fd);
      if (rc < 0) throw new BpfError(`BPF map ${mapName}: cannot share the map of BPF object ${other.name}`, -rc);
    }
  }

  private writeParams(params: Uint8Array): void {
    let rodata: Pointer | null = null;
    for (let m = this.nextMap(null); m !== null; m = this.nextMap(m)) {
      if (libbpf.symbols.bpf_map__is_internal(m) && (libbpf.symbols.bpf_map__name(m) ?? "").endsWith(".rodata")) {
        rodata = m;
        break;
      }
    }
    if (rodata === null) throw BpfError.usage(`BPF object ${this.name} has no .rodata section for its parameters`, ENOENT);
    const sizeBuf = ffiBytes(8);
    const data = libbpf.symbols.bpf_map__initial_value(rodata, ptr(sizeBuf));
    const size = Number(new DataView(sizeBuf.buffer).getBigUint64(0, true));
    if (data === null || size < params.length) {
      throw BpfError.usage(`BPF object ${this.name}: parameters of ${params.length} bytes do not fit its .rodata (${size} bytes)`, EINVAL);
    }
    new Uint8Array(toArrayBuffer(data as Pointer, 0, size)).set(params);
  }

  private nextMap(prev: Pointer | null): Pointer | null {
    return libbpf.symbols.bpf_object__next_map(this.handle, prev) as Pointer | null;
  }

  /** Creates the maps and loads the programs; a rejected program's verifier log ends the message. */
  load(): void {
    this.assertOpen();
    withLibbpfLog((log) => {
      const rc = libbpf.symbols.bpf_object__load(this.handle);
      if (rc < 0) {
        throw new BpfError(`BPF object ${this.name}: load failed`, -rc, logTail(log));
      }
    });
    this.loaded = true;
  }

  map(mapName: string): BpfMap {
    let m = this.maps.get(mapName);
    if (!m) {
      if (!this.loaded) throw BpfError.usage(`BPF object ${this.name}: map ${mapName} used before load()`, EINVAL);
      m = BpfMap.fromLibbpf(this.findMap(mapName), mapName);
      this.maps.set(mapName, m);
    }
    return m;
  }

  programFd(progName: string): number {
    this.assertOpen();
    const p = libbpf.symbols.bpf_object__find_program_by_name(this.handle, cString(progName));
    if (p === null) throw BpfError.usage(`BPF object ${this.name} has no program named ${progName}`, ENOENT);
    const fd = libbpf.symbols.bpf_program__fd(p);
    if (fd < 0) throw BpfError.usage(`BPF program ${progName} used before load()`, -fd);
    return fd;
  }

  /** Frees the object with its programs and maps (attachments and pins keep their own references). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    libbpf.symbols.bpf_object__close(this.handle);
    this.maps.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw BpfError.usage(`BPF object ${this.name} is closed`, EINVAL);
  }
}

function isPerCpu(type: number): boolean {
  return (
    type === BPF_MAP_TYPE_PERCPU_HASH ||
    type === BPF_MAP_TYPE_PERCPU_ARRAY ||
    type === BPF_MAP_TYPE_LRU_PERCPU_HASH ||
    type === BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE
  );
}

export interface MapDump {
  count: number;
  /** count keys back to back */
  keys: Uint8Array;
  /** count values back to back */
  values: Uint8Array;
}

export class BpfMap {
  readonly fd: number;
  readonly keySize: number;
  /** Bytes of a value as user space reads and writes it (all CPUs' copies for per-CPU maps). */
  readonly valueSize: number;
  readonly maxEntries: number;
  private readonly key: Uint8Array;
  private readonly keyPtr: Pointer;
  private readonly nextKey: Uint8Array;
  private readonly nextKeyPtr: Pointer;
  private readonly value: Uint8Array;
  private readonly valuePtr: Pointer;

  private constructor(
    fd: number,
    readonly name: string,
    type: number,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    /** Opened from a pin: the fd is ours to close. */
    private readonly ownsFd = false,
  ) {
    this.fd = fd;
    this.keySize = keySize;
    this.valueSize = isPerCpu(type) ? Math.ceil(valueSize / 8) * 8 * libbpf.symbols.libbpf_num_possible_cpus() : valueSize;
    this.maxEntries = maxEntries;
    // Never zero-sized: ptr() needs memory behind it (ring buffers have no keys or values).
    this.key = ffiBytes(Math.max(this.keySize, 8));
    this.keyPtr = ptr(this.key);
    this.nextKey = ffiBytes(Math.max(this.keySize, 8));
    this.nextKeyPtr = ptr(this.nextKey);
    this.value = ffiBytes(Math.max(this.valueSize, 8));
    this.valuePtr = ptr(this.value);
  }

  /** A map of a loaded object (the object owns the fd). */
  static fromLibbpf(handle: Pointer, name: string): BpfMap {
    const s = libbpf.symbols;
    return new BpfMap(s.bpf_map__fd(handle), name, s.bpf_map__type(handle), s.bpf_map__key_size(handle),
      s.bpf_map__value_size(handle), s.bpf_map__max_entries(handle));
  }

  /** A map pinned in bpffs by a running daemon (the fd stays open for the process's lifetime). */
  static openPinned(path: string): BpfMap {
    const fd = libbpf.symbols.bpf_obj_get(cString(path));
    if (fd < 0) throw new BpfError(`cannot open the pinned BPF map ${path}`, -fd);
    const info = ffiBytes(MAP_INFO_SIZE);
    const len = ffiBytes(4);
    new DataView(len.buffer).setUint32(0, MAP_INFO_SIZE, true);
    const rc = libbpf.symbols.bpf_obj_get_info_by_fd(fd, ptr(info), ptr(len));
    if (rc < 0) throw new BpfError(`cannot read the BPF map info of ${path}`, -rc);
    const v = new DataView(info.buffer);
    const u32 = (off: number) => v.getUint32(off, true);
    return new BpfMap(fd, path.split("/").pop() ?? path, u32(MAP_INFO.type), u32(MAP_INFO.keySize),
      u32(MAP_INFO.valueSize), u32(MAP_INFO.maxEntries), true);
  }

  /** Closes a map opened from a pin (a loaded object's maps close with the object). */
  close(): void {
    if (this.ownsFd) closeFd(this.fd);
  }

  private fail(what: string, err: number): BpfError {
    if (err === E2BIG && what === "update") {
      return new BpfError(`BPF map ${this.name} is full (${this.maxEntries} entries)`, err);
    }
    return new BpfError(`BPF map ${this.name}: ${what} failed`, err);
  }

  private setKey(key: Uint8Array): void {
    if (key.length !== this.keySize) {
      throw BpfError.usage(`BPF map ${this.name}: key of ${key.length} bytes, the map's keys have ${this.keySize}`, EINVAL);
    }
    this.key.set(key);
  }

  /** BPF_ANY by default; BPF_NOEXIST / BPF_EXIST from ffi/libbpf.ts. E2BIG when a hash map is full. */
  update(key: Uint8Array, value: Uint8Array, flags: number = BPF_ANY): void {
    this.setKey(key);
    if (value.length !== this.valueSize) {
      throw BpfError.usage(`BPF map ${this.name}: value of ${value.length} bytes, the map's values have ${this.valueSize}`, EINVAL);
    }
    this.value.set(value);
    const rc = libbpf.symbols.bpf_map_update_elem(this.fd, this.keyPtr, this.valuePtr, flags);
    if (rc < 0) throw this.fail("update", -rc);
  }

  /** Copies the value into out (at least valueSize bytes); false when the key is absent. */
  lookup(key: Uint8Array, out: Uint8Array): boolean {
    this.setKey(key);
    if (out.length < this.valueSize) {
      throw BpfError.usage(`BPF map ${this.name}: lookup into ${out.length} bytes, the map's values have ${this.valueSize}`, EINVAL);
    }
    const rc = libbpf.symbols.bpf_map_lookup_elem(this.fd, this.keyPtr, this.valuePtr);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw this.fail("lookup", -rc);
    out.set(this.value.subarray(0, this.valueSize));
    return true;
  }

  /** False when the key was absent. */
  delete(key: Uint8Array): boolean {
    this.setKey(key);
    const rc = libbpf.symbols.bpf_map_delete_elem(this.fd, this.keyPtr);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw this.fail("delete", -rc);
    return true;
  }

  /** Every key, one syscall per key (BPF_MAP_GET_NEXT_KEY). */
  keys(keySize: number): Uint8Array[] {
    if (keySize !== this.keySize) {
      throw BpfError.usage(`BPF map ${this.name}: keys of ${keySize} bytes asked, the map's keys have ${this.keySize}`, EINVAL);
    }
    const out: Uint8Array[] = [];
    // A hash map restarts from its first key when the current one is deleted meanwhile: the bound
    // keeps a busy map from looping forever.
    for (let prev: Pointer | null = null; out.length < this.maxEntries; prev = this.keyPtr) {
      const rc = libbpf.symbols.bpf_map_get_next_key(this.fd, prev, this.nextKeyPtr);
      if (rc === -ENOENT) break;
      if (rc < 0) throw this.fail("get_next_key", -rc);
      const k = this.nextKey.slice(0, keySize);
      out.push(k);
      this.key.set(k);
    }
    return out;
  }

  /**
   * Every entry in a few syscalls (BPF_MAP_LOOKUP_BATCH; hash and array maps), or at most
   * `limit` of them. `from` (array maps: u32 keys) starts at that key instead of the first. With
   * `into`, the entries land in those buffers (reused by a caller that dumps often; they must
   * hold `limit` keys and values).
   */
  dump(part: { limit?: number; from?: number; into?: { keys: Uint8Array; values: Uint8Array } } = {}): MapDump {
    if (this.keySize === 0 || this.maxEntries === 0) throw BpfError.usage(`BPF map ${this.name} has no entries to dump`, EINVAL);
    const { into, from = 0 } = part;
    const max = Math.min(part.limit ?? this.maxEntries, this.maxEntries);
    if (from > 0 && this.keySize !== 4) throw BpfError.usage(`BPF map ${this.name}: a dump from a key needs u32 keys`, EINVAL);
    if (into && (into.keys.length < max * this.keySize || into.values.length < max * this.valueSize)) {
      throw BpfError.usage(`BPF map ${this.name}: dump buffers too small for ${max} entries`, EINVAL);
    }
    const keys = into?.keys ?? ffiBytes(max * this.keySize);
    const values = into?.values ?? ffiBytes(max * this.valueSize);
    // The batch cursor is a bucket index for hash maps and a key for arrays.
    const inBatch = ffiBytes(Math.max(this.keySize, 8));
    const outBatch = ffiBytes(Math.max(this.keySize, 8));
    const countBuf = ffiBytes(8);
    const countView = new DataView(countBuf.buffer);
    const opts = ffiBytes(MAP_BATCH_OPTS_SIZE);
    encodeMapBatchOpts(opts);
    let count = 0;
    // An array's cursor is the last key read: the batch goes on with the next one.
    if (from > 0) new DataView(inBatch.buffer).setUint32(0, from - 1, true);
    for (let first = from === 0; count < max; first = false) {
      countView.setUint32(0, max - count, true);
      const rc = libbpf.symbols.bpf_map_lookup_batch(
        this.fd,
        first ? null : ptr(inBatch),
        ptr(outBatch),
        ptr(keys, count * this.keySize),
        ptr(values, count * this.valueSize),
        ptr(countBuf),
        ptr(opts),
      );
      if (rc < 0 && rc !== -ENOENT) throw this.fail("batch lookup", -rc);
      count += countView.getUint32(0, true);
      if (rc === -ENOENT) break;
      inBatch.set(outBatch);
    }
    return {
      count,
      keys: keys.subarray(0, count * this.keySize),
      values: values.subarray(0, count * this.valueSize),
    };
  }
}

/**
 * A BPF ring buffer consumer. poll() delivers pending samples to onSample synchronously, each in
 * a buffer that is valid only during the call (the next sample reuses it): copy what you keep.
 * An exception thrown by onSample stops that poll and is rethrown by it; close() from inside
 * onSample stops delivery at once.
 */
export class RingBuffer {
  private readonly callback: JSCallback;
  private handle: Pointer | null;
  private failure: unknown = null;
  private stopped = false;
  private delivered = 0;
  private max = Infinity;
  private copy = new Uint8Array(new ArrayBuffer(4096));
  private readonly views = new Map<number, Uint8Array>();
  private polling = false;
  private closeRequested = false;

  /** An epoll fd that is readable when samples wait (for an event loop to watch). */
  get fd(): number {
    if (this.handle === null) throw BpfError.usage("ring buffer used after close()", EINVAL);
    return libbpf.symbols.ring_buffer__epoll_fd(this.handle);
  }

  constructor(
    private readonly map: BpfMap,
    onSample: (data: Uint8Array) => void,
  ) {
    // A negative return makes libbpf stop consuming and return it from ring_buffer__poll.
    this.callback = new JSCallback((_ctx: Pointer, data: Pointer, size: number | bigint): number => {
      if (this.closeRequested) {
        this.stopped = true;
        return -1;
      }
      try {
        onSample(this.copyOut(data, Number(size)));
        // libbpf consumed this sample before the call: stopping after it loses nothing.
        if (++this.delivered < this.max) return 0;
        this.stopped = true;
        return -1;
      } catch (e) {
        this.failure = e;
        this.stopped = true;
        return -1;
      }
    }, RING_BUFFER_SAMPLE_FN);
    const h = libbpf.symbols.ring_buffer__new(map.fd, this.callback.ptr, null, null);
    if (h === null) {
      const err = errno();
      this.callback.close();
      throw new BpfError(`BPF ring buffer ${map.name}: cannot set up`, err);
    }
    this.handle = h as Pointer;
  }

  /**
   * Delivers pending samples, at most `max`; waits up to timeoutMs for one (0: never blocks).
   * Returns the count (`max`: more may wait).
   */
  poll(timeoutMs = 0, max = Infinity): number {
    if (this.handle === null) throw BpfError.usage(`BPF ring buffer ${this.map.name} is closed`, EINVAL);
    this.polling = true;
    this.stopped = false;
    this.delivered = 0;
    this.max = max;
    let rc: number;
    try {
      rc = libbpf.symbols.ring_buffer__poll(this.handle, timeoutMs);
    } finally {
      this.polling = false;
      if (this.closeRequested) this.close();
    }
    const failure = this.failure;
    if (failure !== null) {
      this.failure = null;
      throw failure;
    }
    if (rc < 0 && !this.stopped && rc !== -EINTR) {
      throw new BpfError(`BPF ring buffer ${this.map.name}: poll failed`, -rc);
    }
    return this.delivered;
  }

  /**
   * The sample in a buffer of ours (the ring's memory is reused once the callback returns): one
   * memcpy into a buffer kept across samples, viewed at the sample's size (a ring's samples
   * mostly have one size), with no allocation per sample.
   */
  private copyOut(data: Pointer, size: number): Uint8Array {
    if (size > this.copy.length) {
      this.copy = new Uint8Array(new ArrayBuffer(Math.max(size, 2 * this.copy.length)));
      this.views.clear();
    }
    // ptr() each time (it is cheap): a pointer kept across calls can go stale (bun-ffi pitfall 1).
    libc.symbols.memcpy(ptr(this.copy), data, size);
    let v = this.views.get(size);
    if (v === undefined) this.views.set(size, (v = this.copy.subarray(0, size)));
    return v;
  }

  /** Safe to call from onSample: no further sample is delivered, the ring is freed after poll(). */
  close(): void {
    if (this.polling) {
      this.closeRequested = true;
      return;
    }
    if (this.handle === null) return;
    libbpf.symbols.ring_buffer__free(this.handle);
    this.handle = null;
    this.callback.close();
  }
}

export interface TestRunResult {
  retval: number;
  /** The packet as the program left it. */
  data: Uint8Array;
  ctxOut?: Uint8Array;
  /** Average run time per repetition. */
  durationNs: number;
}

/** Room for a program to grow the packet (bpf_xdp_adjust_tail / skb_change_tail). */
const TEST_RUN_HEADROOM = 4096;

/** Runs a loaded program on a packet in the kernel (BPF_PROG_TEST_RUN), without any device. */
export function testRun(
  progFd: number,
  frame: Uint8Array,
  opts: { ctxIn?: Uint8Array; repeat?: number } = {},
): TestRunResult {
  const dataIn = ffiBytes(Math.max(frame.length, 1));
  dataIn.set(frame);
  const dataOut = ffiBytes(frame.length + TEST_RUN_HEADROOM);
  const ctxIn = opts.ctxIn?.length ? ffiBytes(opts.ctxIn.length) : null;
  if (ctxIn && opts.ctxIn) ctxIn.set(opts.ctxIn);
  const ctxOut = ctxIn ? ffiBytes(ctxIn.length) : null;
  const runOpts = ffiBytes(TEST_RUN_OPTS_SIZE);
  encodeTestRunOpts(runOpts, {
    dataIn: ptr(dataIn),
    dataSizeIn: frame.length,
    dataOut: ptr(dataOut),
    dataSizeOut: dataOut.length,
    ctxIn: ctxIn ? ptr(ctxIn) : 0,
    ctxSizeIn: ctxIn?.length ?? 0,
    ctxOut: ctxOut ? ptr(ctxOut) : 0,
    ctxSizeOut: ctxOut?.length ?? 0,
    repeat: opts.repeat ?? 1,
  });
  const rc = libbpf.symbols.bpf_prog_test_run_opts(progFd, ptr(runOpts));
  if (rc < 0) throw new BpfError(`test run of BPF program fd ${progFd} failed`, -rc);
  const out = decodeTestRunOpts(runOpts);
  return {
    retval: out.retval,
    data: dataOut.slice(0, out.dataSizeOut),
    ...(ctxOut ? { ctxOut: ctxOut.slice(0, out.ctxSizeOut) } : {}),
    durationNs: out.durationNs,
  };
}
