// libbpf prints warnings (including the verifier log of a rejected program) to stderr by default.
// We route them into a callback instead: outside withLibbpfLog() they are dropped, inside they are
// collected so that an error can quote them.
import { JSCallback, ptr, toArrayBuffer, type Pointer } from "bun:ffi";
import { libbpf, LIBBPF_WARN, PRINT_FN } from "../ffi/libbpf.ts";
import { libc } from "../ffi/libc.ts";

const LINE_MAX = 4096;
/** The verifier log arrives as one message of up to 16 MiB; its end says what went wrong. */
const MESSAGE_TAIL_CHARS = 64 * 1024;
/** sizeof(va_list): 24 on x86-64, 32 on arm64. */
const VA_LIST_MAX = 32;

const line = new Uint8Array(new ArrayBuffer(LINE_MAX));
const linePtr = ptr(line);
const vaCopy = new Uint8Array(new ArrayBuffer(VA_LIST_MAX));
const vaCopyPtr = ptr(vaCopy);
const decoder = new TextDecoder();

let current: string[] | null = null;

// The print callback receives its va_list as a pointer (x86-64: va_list is an array type; arm64: a
// 32-byte struct passed by reference), which vsnprintf takes the same way. vsnprintf consumes the
// va_list, so each attempt formats from a fresh copy (what va_copy does on both ABIs).
function format(fmt: Pointer, args: Pointer): string {
  const saved = new Uint8Array(toArrayBuffer(args, 0, VA_LIST_MAX)).slice();
  vaCopy.set(saved);
  const n = libc.symbols.vsnprintf(linePtr, LINE_MAX, fmt, vaCopyPtr);
  if (n < LINE_MAX) return decoder.decode(line.subarray(0, Math.max(n, 0)));
  const big = new Uint8Array(new ArrayBuffer(n + 1));
  vaCopy.set(saved);
  const m = libc.symbols.vsnprintf(ptr(big), n + 1, fmt, vaCopyPtr);
  return decoder.decode(big.subarray(0, Math.min(Math.max(m, 0), n)));
}

// Installed once for the life of the process (libbpf keeps calling it), so it is never closed.
const printCallback = new JSCallback((level: number, fmt: Pointer, args: Pointer): number => {
  try {
    if (current !== null && level === LIBBPF_WARN) current.push(format(fmt, args).slice(-MESSAGE_TAIL_CHARS));
  } catch {
    // Nothing sensible to do inside libbpf's logger: drop the message.
  }
  return 0;
}, PRINT_FN);
libbpf.symbols.libbpf_set_print(printCallback.ptr);

/** Runs fn while collecting libbpf's warnings into the array handed to it. */
export function withLibbpfLog<T>(fn: (log: readonly string[]) => T): T {
  const previous = current;
  const log: string[] = [];
  current = log;
  try {
    return fn(log);
  } finally {
    current = previous;
  }
}
