// Binding to ffi/wakeup-thread.c, compiled once per process by bun:ffi's cc. TinyCC reads its
// source from a path, and the compiled binary has the source only as embedded text: it is handed
// over in a memfd, so nothing is written to disk.
import { cc, type Pointer } from "bun:ffi";
import source from "./wakeup-thread.c" with { type: "text" };
import { close, memoryFile } from "./libc.ts";

const symbols = {
  wakeup_start: { args: ["i32", "i32", "i32", "i32"], returns: "ptr" },
  wakeup_stop: { args: ["ptr"], returns: "void" },
} as const;

type Compiled = ReturnType<typeof cc<typeof symbols>>;
let compiled: Compiled | null = null;

function library(): Compiled["symbols"] {
  if (!compiled) {
    const fd = memoryFile("wakeup-thread.c", new TextEncoder().encode(source));
    try {
      compiled = cc({ source: `/proc/self/fd/${fd}`, symbols });
    } finally {
      close(fd);
    }
  }
  return compiled.symbols;
}

/**
 * Starts a thread that sleeps in epoll_wait on `ep`, writes a byte to `notify` when an fd is
 * readable, and then waits for a write to the eventfd `ack`. `stopFd`: an eventfd in `ep`.
 */
export function startWakeupThread(ep: number, notify: number, ack: number, stopFd: number): Pointer {
  const w = library().wakeup_start(ep, notify, ack, stopFd) as Pointer | null;
  if (w === null) throw new Error("could not start the wake-up thread (pthread_create failed)");
  return w;
}

/** Ends the thread and waits for it; `w` is invalid afterwards. */
export function stopWakeupThread(w: Pointer): void {
  library().wakeup_stop(w);
}
