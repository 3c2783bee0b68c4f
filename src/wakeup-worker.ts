// Runs in a Worker: sleeps in epoll_wait on the daemon's event sockets and wakes the main thread
// when one is readable, then waits until the main thread has drained them. The main thread
// can't block in epoll itself (it runs timers and signal handlers); a poll timer would add up
// to its period to every flow's time to offload.
import { epollWait, epollWatching } from "../ffi/libc.ts";

declare const self: Worker;

export interface WakeupStart {
  fds: number[];
  /** [0]: 1 while the main thread drains; [1]: 1 when the worker must end. */
  state: Int32Array;
}

self.onmessage = (e: MessageEvent<WakeupStart>) => {
  const { fds, state } = e.data;
  const ep = epollWatching(fds);
  while (Atomics.load(state, 1) === 0) {
    epollWait(ep);
    if (Atomics.load(state, 1) !== 0) break;
    Atomics.store(state, 0, 1);
    self.postMessage(0);
    Atomics.wait(state, 0, 1);
  }
  self.postMessage(1);
};
