// A flood of distinct UDP flows against a small flow map (--max-flows 1024): established
// offloaded connections keep working (or fall back to the kernel), nothing blocks, the daemon's
// memory stays bounded and it warns once that the table is full.
import { afterAll, describe, expect, test } from "bun:test";
import { realpathSync } from "node:fs";
import { ADDR, type Lab } from "./lab.ts";
import { BIN, Offloader } from "./offloader.ts";
import { labFixture, startTcpClient, tcpSink, udpEcho } from "./traffic.ts";
import {
  arrivalCounter, checkMap, conntrackCount, errorLines, exeOf, expectAlive, rssKiB, startUdpFlow, stillFor,
} from "./fixtures/faults.ts";
import { Flood, dropAtServer } from "./fixtures/flood.ts";

const MAX_FLOWS = 1024;
const FLOWS = 300_000;
/**
 * How much the daemon's resident memory may grow over the flood. Everything it keeps per flow is
 * bounded by --max-flows, except flows waiting for conntrack (bounded by time). Measured here:
 * +40 to +62 MiB of garbage between collections, the same after 200,000 flows as after 800,000;
 * a leak of 200 bytes per flooded packet would exceed the bound.
 */
const RSS_GROWTH_BOUND_KIB = 96 * 1024;

describe("a flood of new flows against --max-flows 1024", () => {
  let lab!: Lab;
  let flood: Flood | undefined; // built with the lab
  labFixture({}, [tcpSink, udpEcho], (l) => (lab = l), (l) => {
    flood = new Flood();
    dropAtServer(l);
  });
  afterAll(() => flood?.remove());

  test(`${FLOWS} flows twice over: transfers go on, memory bounded, one warning`, async () => {
    const off = new Offloader(lab, ["lan", "wan", "--max-flows", String(MAX_FLOWS)]);
    let peak = 0;
    let sampling: ReturnType<typeof setInterval> | null = null;
    try {
      await off.waitFor(/running on/);
      // `ip netns exec` execs the daemon in place: this pid is the daemon itself.
      expect(exeOf(off.pid)).toBe(realpathSync(BIN));
      const replies = arrivalCounter(lab, lab.client, "udp sport 7001");
      const tcp = await startTcpClient(lab, off, ADDR.server4, 256);
      const udp = await startUdpFlow(lab, off, ADDR.server4, 7001);
      await Bun.sleep(1000); // the daemon's memory after its first sweeps, before the flood
      const baseline = rssKiB(off.pid)!;
      sampling = setInterval(() => (peak = Math.max(peak, rssKiB(off.pid) ?? 0)), 200);
      const transfer = tcp.go();
      const sent = await flood!.run(lab, FLOWS, { rounds: 2 });
      expect(sent.sent).toBe(FLOWS * 2);
      // The flood filled the flow map and more than filled conntrack's table.
      const res = await transfer;
      expect(res.reply.sha256).toBe(res.sent);
      expect(res.reply.bytes).toBe(256 * 1024 * 1024 + 1024);
      const { before, after } = await stillFor(replies, 1000);
      expect(after - before).toBeGreaterThan(300); // 1000 a second
      await expectAlive(off.pid, off.dirs.runDir);
      clearInterval(sampling);
      peak = Math.max(peak, rssKiB(off.pid)!);
      console.log(`daemon RSS: ${baseline} KiB before the flood, peak ${peak} KiB (bound +${RSS_GROWTH_BOUND_KIB}); conntrack entries ${conntrackCount(lab)}`);
      expect(peak - baseline).toBeLessThan(RSS_GROWTH_BOUND_KIB);
      expect(off.output.match(/flow table full/g)).toEqual(["flow table full"]);
      const { flows, problems } = checkMap(lab, off.dirs.pinPath);
      expect(flows.length).toBeLessThanOrEqual(MAX_FLOWS);
      expect(problems).toEqual([]);
      expect(errorLines(off.output)).toEqual([]);
      await udp.stop();
    } finally {
      if (sampling) clearInterval(sampling);
      expect(await off.stop()).toBe(0);
    }
  }, 60_000);
});
