// Event-driven draining of the daemon's sockets: a thread (ffi/wakeup-thread.c) sleeps in epoll
// on them and writes to a pipe that Bun's event loop watches, so `onReady` runs on the main
// thread as soon as one is readable: a flow is offloaded the moment its event arrives, and an
// idle daemon uses no CPU. The thread then waits for the drain to finish before it polls again.
import type { Pointer } from "bun:ffi";
import { close, epollWatching, eventFd, pipe, signalEventFd } from "../ffi/libc.ts";
import { startWakeupThread, stopWakeupThread } from "../ffi/wakeup-thread.ts";

export class Wakeup {
  private readonly stopFd: number;
  private readonly ackFd: number;
  private readonly ep: number;
  private readonly pipeFds: [number, number];
  private readonly thread: Pointer;
  private readonly reader: { read(): Promise<{ done: boolean }>; cancel(): Promise<void> };
  private closed = false;

  /** onReady handles its own errors (the daemon's guard does): a throw is an unhandled rejection. */
  constructor(fds: readonly number[], onReady: () => void) {
    const opened: number[] = [];
    try {
      this.stopFd = eventFd();
      opened.push(this.stopFd);
      this.ackFd = eventFd();
      opened.push(this.ackFd);
      this.ep = epollWatching([...fds, this.stopFd]);
      opened.push(this.ep);
      this.pipeFds = pipe();
      opened.push(...this.pipeFds);
      this.thread = startWakeupThread(this.ep, this.pipeFds[1], this.ackFd, this.stopFd);
    } catch (e) {
      for (const fd of opened) close(fd);
      throw e;
    }
    this.reader = Bun.file(this.pipeFds[0]).stream().getReader();
    void this.listen(onReady);
  }

  private async listen(onReady: () => void): Promise<void> {
    for (;;) {
      const r = await this.reader.read().catch(() => null);
      if (!r || r.done || this.closed) return;
      try {
        onReady();
      } finally {
        signalEventFd(this.ackFd);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    stopWakeupThread(this.thread);
    for (const fd of [this.ep, this.ackFd, this.stopFd]) close(fd);
    // The pipe once Bun's event loop has let go of its read end: a number closed while the loop
    // still watches it could be reused by another fd in between.
    const pipeFds = this.pipeFds;
    void this.reader.cancel().catch(() => {}).then(() => {
      for (const fd of pipeFds) close(fd);
    });
  }
}
