// The compiled daemon in the VM lab's router namespace, its log collected (test/offloader.ts does
// the same for test/lab.ts). EO_BIN picks another binary than dist/ebpf-offloader.
import { Offloader } from "../offloader.ts";

export const BIN = process.env.EO_BIN || `${import.meta.dir}/../../dist/ebpf-offloader`;

/** The offloader in a VM lab namespace; TCG is slow, so waits are generous. */
export class Daemon extends Offloader {
  constructor(netns: string, args: string[]) {
    super({ router: netns }, args, undefined, { bin: BIN, waitMs: 30_000 });
  }
}

/** The promise, or an error with the daemon's log when it takes longer than `ms`. */
export async function within<T>(p: Promise<T>, ms: number, off: Daemon): Promise<T> {
  let timer: Timer | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result after ${ms} ms; offloader log:\n${off.output}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A string as a literal part of a RegExp. */
export const esc = (s: string) => s.replace(/[[\]().*+?^$|\\]/g, "\\$&");
