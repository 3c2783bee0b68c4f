// BPF_PROG_TEST_RUN for the fuzzer, with every buffer allocated once: src/bpf.ts's testRun makes
// fresh ones per call, which costs more than the run itself at tens of thousands of runs a second.
import { ptr, type Pointer } from "bun:ffi";
import { ffiBytes } from "../ffi/buffer.ts";
import { TEST_RUN_OPTS_SIZE, encodeTestRunOpts, libbpf } from "../ffi/libbpf.ts";
import type { HookName } from "./fuzz-model.ts";

/** The loopback device: a test run needs a real device to name as the ingress. */
export const INGRESS_IFINDEX = 1;
/** Larger than any frame made here; the kernel's skb test run takes up to about a page. */
export const MAX_FRAME = 3500;
/** Room the program may grow the frame by (pushed tags): the test run copies out the result. */
const OUT_ROOM = 512;

export interface HookDef {
  name: HookName;
  prog: string;
  ctxSize: number;
  codes: { pass: number; drop: number; tx: number; redirect: number };
}

export const HOOKS: readonly HookDef[] = [
  // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
  { name: "xdp", prog: "offload_xdp", ctxSize: 24, codes: { pass: 2, drop: 1, tx: 3, redirect: 4 } },
  // struct __sk_buff: ingress_ifindex at 36, gso_size at 176 (as in datapath.test.ts)
  { name: "tc", prog: "offload_tc", ctxSize: 192, codes: { pass: 0, drop: 2, tx: -1, redirect: 7 } },
];

export function verdictName(hook: HookDef, rc: number): string {
  const name = Object.entries(hook.codes).find(([, c]) => c === rc)?.[0];
  return name ? `${name} (${rc})` : `${rc}`;
}

export class TestRunner {
  private readonly dataIn = ffiBytes(MAX_FRAME);
  private readonly dataOut = ffiBytes(MAX_FRAME + OUT_ROOM);
  private readonly ctxIn: Uint8Array;
  private readonly ctxView: DataView;
  private readonly ctxOut: Uint8Array;
  private readonly opts = ffiBytes(TEST_RUN_OPTS_SIZE);
  private readonly optsView = new DataView(this.opts.buffer);
  private readonly optsPtr: Pointer;

  constructor(
    private readonly fd: number,
    readonly hook: HookDef,
  ) {
    this.ctxIn = ffiBytes(hook.ctxSize);
    this.ctxView = new DataView(this.ctxIn.buffer);
    this.ctxOut = ffiBytes(hook.ctxSize);
    this.ctxView.setUint32(hook.name === "xdp" ? 12 : 36, INGRESS_IFINDEX, true);
    encodeTestRunOpts(this.opts, {
      dataIn: ptr(this.dataIn),
      dataSizeIn: 0,
      dataOut: ptr(this.dataOut),
      dataSizeOut: this.dataOut.length,
      ctxIn: ptr(this.ctxIn),
      ctxSizeIn: this.ctxIn.length,
      ctxOut: ptr(this.ctxOut),
      ctxSizeOut: this.ctxOut.length,
      repeat: 1,
    });
    this.optsPtr = ptr(this.opts);
  }

  /** The program's return value, or -errno when the kernel refuses the run. */
  run(frame: Uint8Array, gsoSize: number): number {
    if (frame.length > MAX_FRAME) throw new RangeError(`frame of ${frame.length} bytes`);
    this.dataIn.set(frame);
    if (this.hook.name === "xdp") this.ctxView.setUint32(4, frame.length, true);
    else this.ctxView.setUint32(176, gsoSize, true);
    const v = this.optsView;
    v.setUint32(24, frame.length, true);
    v.setUint32(28, this.dataOut.length, true);
    v.setUint32(52, this.ctxOut.length, true);
    const rc = libbpf.symbols.bpf_prog_test_run_opts(this.fd, this.optsPtr);
    if (rc < 0) return rc;
    return v.getUint32(56, true);
  }

  /** The frame as the last run left it (a view: copy it to keep it). */
  output(): Uint8Array {
    return this.dataOut.subarray(0, this.optsView.getUint32(28, true));
  }
}
