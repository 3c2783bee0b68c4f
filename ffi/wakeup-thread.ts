// Binding to ffi/wakeup-thread.c, compiled once per process by bun:ffi's cc. TinyCC reads its
// source from a path, and the compiled binary has the source only as embedded text: it is handed
// over in a memfd, so nothing is written to disk. The C code calls libc through a table of
// function pointers (struct libc_fns, in this order), so it links against nothing.
import { cc, type Pointer } from "bun:ffi";
import source from "./wakeup-thread.c" with { type: "text" };
import { close, libcFunction, memoryFile } from "./libc.ts";

const LIBC_FNS = ["pthread_create", "pthread_join", "pthread_sigmask", "epoll_wait", "read", "write", "calloc", "free"];

const symbols = {
  wakeup_start: { args: ["ptr", "i32", "i32", "i32", "i32"], returns: "ptr" },
  wakeup_stop: { args: ["ptr"], returns: "void" },
} as const;

type Compiled = ReturnType<typeof cc<typeof symbols>>;
let compiled: { lib: Compiled["symbols"]; fns: BigUint64Array } | null = null;

function library(): { lib: Compiled["symbols"]; fns: BigUint64Array } {
  if (!compiled) {
    const fns = new BigUint64Array(new ArrayBuffer(8 * LIBC_FNS.length));
    LIBC_FNS.forEach((name, i) => (fns[i] = BigInt(libcFunction(name))));
    const fd = memoryFile("wakeup-thread.c", new TextEncoder().encode(source));
    try {
      compiled = { lib: cc({ source: `/proc/self/fd/${fd}`, flags: "-std=c11 -nostdlib", symbols }).symbols, fns };
    } finally {
      close(fd);
    }
  }
  return compiled;
}

/**
 * Starts a thread that sleeps in epoll_wait on `ep`, writes a byte to `notify` when an fd is
 * readable, and then waits for a write to the eventfd `ack`. `stopFd`: an eventfd in `ep`.
 */
export function startWakeupThread(ep: number, notify: number, ack: number, stopFd: number): Pointer {
  const { lib, fns } = library();
  const w = lib.wakeup_start(fns, ep, notify, ack, stopFd) as Pointer | null;
  if (w === null) throw new Error("could not start the wake-up thread (pthread_create failed)");
  return w;
}

/** Ends the thread and waits for it; `w` is invalid afterwards. */
export function stopWakeupThread(w: Pointer): void {
  library().lib.wakeup_stop(w);
}
