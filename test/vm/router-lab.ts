// What the VM labs share: commands in their namespaces, the router's nftables counters and
// kernel packet counters, and a teardown that leaves nothing behind.
import type { Subprocess } from "bun";
import { nftCounter, sh } from "../lab.ts";

export abstract class VmRouterLab {
  abstract readonly router: string;
  /** Long-running helpers (pppd, pppoe-server...) killed on teardown. */
  protected readonly procs: Subprocess[] = [];
  private destroyed = false;

  /** Every namespace the lab creates. */
  protected abstract namespaces(): string[];

  /** What a lab removes besides its processes and namespaces. */
  protected cleanup(): void {}

  forwardedPackets(): number {
    return nftCounter(this.router, "forwarded");
  }

  invalidPackets(): number {
    return nftCounter(this.router, "invalid");
  }

  /** Packets a device of the router received, from its kernel counters. */
  rxPackets(dev: string): number {
    const [link] = JSON.parse(this.exec(this.router, ["ip", "-j", "-s", "link", "show", dev])) as { stats64: { rx: { packets: number } } }[];
    return link!.stats64.rx.packets;
  }

  exec(ns: string, cmd: string[], opts: { allowFail?: boolean } = {}): string {
    return sh(["ip", "netns", "exec", ns, ...cmd], opts);
  }

  spawn(ns: string, cmd: string[]): Subprocess<"pipe", "pipe", "pipe"> {
    return Bun.spawn(["ip", "netns", "exec", ns, ...cmd], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const p of this.procs) p.kill("SIGKILL");
    for (const ns of this.namespaces()) {
      for (const pid of sh(["ip", "netns", "pids", ns], { allowFail: true }).split("\n").filter(Boolean)) {
        sh(["kill", "-9", pid], { allowFail: true });
      }
      sh(["ip", "netns", "del", ns], { allowFail: true });
    }
    this.cleanup();
  }
}
