// The wake-up thread (ffi/wakeup-thread.c, run by src/wakeup.ts): a readable fd wakes the main
// thread once per drain, and close() ends the thread. Real threads, fds and epoll; no root.
import { expect, test } from "bun:test";
import { readdirSync, readSync } from "node:fs";
import { close, eventFd, setNonBlocking, signalEventFd } from "../ffi/libc.ts";
import { Wakeup } from "../src/wakeup.ts";

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond() && performance.now() < end) await Bun.sleep(5);
}

const openFds = () => readdirSync("/proc/self/fd").length;

test("a readable fd wakes the main thread once per drain; after close() nothing does, no fd is left", async () => {
  const sources = [eventFd(), eventFd()];
  const fdsBefore = openFds();
  for (const fd of sources) setNonBlocking(fd);
  const counter = new Uint8Array(8);
  const woken: number[] = [];
  const wakeup = new Wakeup(sources, () => {
    woken.push(performance.now());
    // Drains whichever source is readable, as the daemon drains its sockets.
    for (const fd of sources) {
      try {
        readSync(fd, counter);
      } catch {
        // EAGAIN: this one was not signalled
      }
    }
  });
  try {
    await Bun.sleep(50);
    expect(woken.length).toBe(0);
    for (const [i, fd] of sources.entries()) {
      signalEventFd(fd);
      await until(() => woken.length === i + 1);
      await Bun.sleep(50);
      // Drained: epoll is level-triggered, so a missed ack or drain would show as more wake-ups.
      expect(woken.length).toBe(i + 1);
    }
  } finally {
    wakeup.close();
  }
  signalEventFd(sources[0]!);
  await Bun.sleep(50);
  expect(woken.length).toBe(2);
  expect(openFds()).toBe(fdsBefore);
  for (const fd of sources) close(fd);
});
