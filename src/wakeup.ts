// Event-driven draining of the daemon's sockets: a Worker (wakeup-worker.ts) blocks in epoll on
// them and calls `onReady` on the main thread as soon as one is readable, so a flow is offloaded
// the moment its event arrives, and an idle daemon uses no CPU.
import { close, eventFd, signalEventFd } from "../ffi/libc.ts";
import type { WakeupStart } from "./wakeup-worker.ts";

export class Wakeup {
  private readonly worker: Worker;
  private readonly state = new Int32Array(new SharedArrayBuffer(8));
  private readonly stopFd = eventFd();
  private closed = false;

  constructor(fds: readonly number[], onReady: () => void) {
    this.worker = new Worker(new URL("./wakeup-worker.ts", import.meta.url).href);
    this.worker.onmessage = (e: MessageEvent<number>) => {
      if (e.data !== 0 || this.closed) return;
      try {
        onReady();
      } finally {
        this.release();
      }
    };
    const start: WakeupStart = { fds: [...fds, this.stopFd], state: this.state };
    this.worker.postMessage(start);
  }

  private release(): void {
    Atomics.store(this.state, 0, 0);
    Atomics.notify(this.state, 0);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.state, 1, 1);
    signalEventFd(this.stopFd);
    this.release();
    this.worker.terminate();
    close(this.stopFd);
  }
}
