// The daemon killed (SIGKILL) or stopped (SIGSTOP) mid-transfer while conntrack changes under it,
// then continued or restarted: transfers complete, and the flow map holds exactly what conntrack
// allows, with no duplicate or stale flow left over from before (adoption re-checks every one).
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { ADDR, type Lab } from "./lab.ts";
import { Offloader, StateDirs } from "./offloader.ts";
import { BUN, FIX, labFixture, startTcpClient, startUdpClient, tcpSink, udpEchoOn } from "./traffic.ts";
import { arrivalCounter, checkMap, errorLines, expectAlive, startUdpFlow, stillFor, until } from "./fixtures/faults.ts";

describe("SIGKILL and SIGSTOP mid-transfer, with conntrack changing meanwhile", () => {
  let lab!: Lab;
  labFixture({}, [tcpSink, udpEchoOn("7001", "7002", "7003")], (l) => (lab = l));

  /** Polls until the map matches conntrack (the daemon had a moment to settle), or fails with why not. */
  const expectMapMatches = async (off: Offloader) => {
    let problems: string[] = [];
    await until(() => (problems = checkMap(lab, off.dirs.pinPath).problems).length === 0, 10_000, () => problems.join("\n"));
  };

  const replies = (port: number) => arrivalCounter(lab, lab.client, `udp sport ${port}`);
  const expectFlowing = async (count: () => number) => {
    const { before, after } = await stillFor(count, 1000);
    expect(after - before).toBeGreaterThan(300); // 1000 a second
  };

  for (const resume of ["SIGCONT", "SIGKILL and a restart"] as const) {
    test(`SIGSTOP past the heartbeat timeout, a FIN and a conntrack -D meanwhile, then ${resume}`, async () => {
      const dirs = new StateDirs();
      const first = new Offloader(lab, ["lan", "wan", "--heartbeat-timeout", "1"], dirs);
      let second: Offloader | null = null;
      try {
        await first.waitFor(/running on/);
        const live = await startUdpFlow(lab, first, ADDR.server4, 7001);
        const doomed = await startUdpClient(lab, first, ADDR.server4, 200, 1000, 7002);
        await doomed.go(); // finished, still offloaded (idle)
        const tcp = await startTcpClient(lab, first, ADDR.server4, 64);
        const liveReplies = replies(7001);
        first.kill("SIGSTOP");
        await Bun.sleep(1500); // past the heartbeat timeout: the kernel carries everything
        const t = await tcp.go(); // completes, FIN and all, while the daemon is stopped
        expect(t.reply.sha256).toBe(t.sent);
        lab.exec(lab.router, ["conntrack", "-D", "-p", "udp", "--dport", "7002"]);
        let off = first;
        if (resume === "SIGCONT") {
          first.kill("SIGCONT");
        } else {
          first.kill("SIGKILL");
          await first.stop();
          off = second = new Offloader(lab, ["lan", "wan", "--heartbeat-timeout", "1"], dirs);
          await second.waitFor(/adopted \d+ offloaded connection\(s\) from the previous run/);
        }
        await expectMapMatches(off);
        const flows = checkMap(lab, dirs.pinPath).flows;
        expect(flows.filter((f) => [5201, 7002].includes(f.key.dport) || [5201, 7002].includes(f.key.sport))).toEqual([]);
        expect(flows.filter((f) => f.key.dport === 7001 || f.key.sport === 7001).length).toBe(2);
        await expectFlowing(liveReplies);
        await expectAlive(off.pid, dirs.runDir);
        expect(errorLines(off.output)).toEqual([]);
        await live.stop();
      } finally {
        first.kill("SIGCONT");
        await first.stop();
        if (second) expect(await second.stop()).toBe(0);
        dirs.remove();
      }
    }, 60_000);
  }

  test("SIGKILL mid-transfer, restart: the transfer completes, adopted flows match conntrack", async () => {
    const dirs = new StateDirs();
    const first = new Offloader(lab, ["lan", "wan"], dirs);
    let second: Offloader | null = null;
    const flows: { stop(): Promise<void> }[] = [];
    try {
      await first.waitFor(/running on/);
      flows.push(await startUdpFlow(lab, first, ADDR.server4, 7001));
      flows.push(await startUdpFlow(lab, first, ADDR.server4, 7003));
      const tcp = await startTcpClient(lab, first, ADDR.server4, 512);
      const transfer = tcp.go();
      await Bun.sleep(200);
      first.kill("SIGKILL");
      await first.stop();
      // While no daemon runs, conntrack forgets one flow; its traffic makes a new entry at once.
      lab.exec(lab.router, ["conntrack", "-D", "-p", "udp", "--dport", "7003"]);
      second = new Offloader(lab, ["lan", "wan"], dirs);
      await second.waitFor(/adopted \d+ offloaded connection\(s\) from the previous run/);
      const res = await transfer;
      expect(res.reply.sha256).toBe(res.sent);
      expect(res.reply.bytes).toBe(512 * 1024 * 1024 + 1024);
      await expectMapMatches(second);
      await expectFlowing(replies(7001));
      await expectFlowing(replies(7003));
      expect(lab.invalidPackets()).toBe(0);
      expect(errorLines(second.output)).toEqual([]);
    } finally {
      for (const f of flows) await f.stop(); // a sender left running would disturb the next test
      await first.stop();
      if (second) expect(await second.stop()).toBe(0);
      dirs.remove();
    }
  }, 60_000);

  test("SIGKILL, and the flow's NAT mapping changes before the restart: adoption must not keep the old one", async () => {
    const dirs = new StateDirs();
    const first = new Offloader(lab, ["lan", "wan"], dirs);
    let second: Offloader | null = null;
    let flow: Awaited<ReturnType<typeof startUdpFlow>> | null = null;
    try {
      await first.waitFor(/running on/);
      flow = await startUdpFlow(lab, first, ADDR.server4, 7001);
      const sender = flow.pid;
      first.kill("SIGKILL");
      await first.stop();
      // Pause the flow, forget its entry, and let something else take its NAT mapping
      // (router:SPORT <-> server:7001): when the flow resumes, masquerade gives it another port.
      process.kill(sender, "SIGSTOP");
      await Bun.sleep(100);
      lab.exec(lab.router, ["conntrack", "-D", "-p", "udp", "--dport", "7001"]);
      // The router itself, from its WAN address: the same mapping as masquerade gave the flow.
      lab.exec(lab.router, [BUN, "-e",
        `const s = await Bun.udpSocket({ hostname: "${ADDR.routerWan4}", port: ${flow.sport} }); s.send("x", 7001, "${ADDR.server4}"); await Bun.sleep(100); s.close();`]);
      process.kill(sender, "SIGCONT");
      await Bun.sleep(300);
      expect(lab.conntrack(["-p", "udp", "--dport", "7001"])).toMatch(new RegExp(`src=10\\.200\\.1\\.2 .*sport=${flow.sport} .*dport=(?!${flow.sport}\\b)\\d+`));
      // From here on the server must see the flow from its new port only: the old one belongs to the other host.
      const onOldPort = arrivalCounter(lab, lab.server, `ip saddr ${ADDR.routerWan4} udp sport ${flow.sport} udp dport 7001`);
      second = new Offloader(lab, ["lan", "wan"], dirs);
      await second.waitFor(/running on/);
      await Bun.sleep(1500);
      expect(checkMap(lab, dirs.pinPath).problems).toEqual([]);
      expect(onOldPort()).toBe(0);
      await expectFlowing(replies(7001));
    } finally {
      if (flow) {
        if (existsSync(`/proc/${flow.pid}`)) process.kill(flow.pid, "SIGCONT"); // still stopped if the test failed early
        await flow.stop();
      }
      await first.stop();
      if (second) expect(await second.stop()).toBe(0);
      dirs.remove();
    }
  }, 60_000);
});
