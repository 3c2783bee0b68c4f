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
