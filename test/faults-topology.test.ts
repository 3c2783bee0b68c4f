// Faults in the router's own configuration while flows are offloaded: a route, an address or a
// whole device goes away. The fast path must never carry a packet the kernel would now drop (no
// route) or send one to a device that is gone; the daemon hands the flows back, says so and keeps
// running. The lab's service address is reachable through server (wan) or server2 (wan2).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { ADDR, Lab, removeStaleLabs } from "./lab.ts";
import { Offloader } from "./offloader.ts";
import { BUN, FIX, startUdpClient } from "./traffic.ts";
import { arrivalCounter, checkMap, errorLines, expectAlive, stillFor } from "./fixtures/faults.ts";

/** Long enough for the daemon to react and for packets in flight to land; not a timing claim. */
const SETTLE_MS = 1500;

function startEchoes(lab: Lab, children: { kill(): void }[]): void {
  for (const ns of [lab.server, lab.server2]) children.push(lab.spawn(ns, [BUN, `${FIX}/udp-echo.ts`, "7001", ADDR.service4]));
  // Bound to every address: answers for the server's own address too.
  children.push(lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7003"]));
}

describe("routes and addresses removed under offloaded flows", () => {
  let lab: Lab;
  const children: { kill(): void }[] = [];
  let off: Offloader | null = null;

  beforeAll(async () => {
    removeStaleLabs("eo");
    lab = new Lab({ secondWan: true }).create();
    startEchoes(lab, children);
    await Bun.sleep(300);
  });

  // Every test starts from the lab's own configuration, whatever the previous one removed.
  beforeEach(() => {
    const r = (args: string[]) => lab.exec(lab.router, args, { allowFail: true });
    r(["ip", "addr", "replace", `${ADDR.routerWan4}/24`, "dev", "wan"]);
    r(["ip", "addr", "replace", `${ADDR.routerLan4}/24`, "dev", "lan"]);
    r(["ip", "route", "del", "default"]);
    r(["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server4, "dev", "wan"]);
  });

  afterEach(async () => {
    if (off) {
      expect(errorLines(off.output)).toEqual([]);
      expect(await off.stop()).toBe(0);
    }
    off = null;
  });

  afterAll(() => {
    for (const c of children) c.kill();
    lab?.destroy();
  });

  const start = async () => {
    off = new Offloader(lab, ["lan", "wan", "wan2", "--log-level", "debug"]);
    await off.waitFor(/running on/);
    return off;
  };

  /**
   * Offloads a UDP flow to HOST:PORT, removes something with `fault`, and checks that from then
   * on nothing more arrives where `arrivals` counts, that the daemon handed the flow back and that
   * it keeps running with a flow map that matches conntrack.
   */
  const faultUnderFlow = async (host: string, port: number, arrivals: () => number, fault: () => void, handBack: RegExp) => {
    const o = await start();
    const client = await startUdpClient(lab, o, host, 6000, 1000, port);
    const done = client.go();
    await Bun.sleep(500);
    const before = arrivals();
    expect(before).toBeGreaterThan(0); // the flow was getting through until now
    fault();
    await o.waitFor(handBack, 5000);
    await Bun.sleep(SETTLE_MS);
    // The client keeps sending for seconds more: none of it may get through.
    const { before: a, after: b } = await stillFor(arrivals, 2000);
    expect(b).toBe(a);
    await expectAlive(o.pid, o.dirs.runDir);
    expect(checkMap(lab, o.dirs.pinPath).problems).toEqual([]);
    await done;
  };

  test("the route to the server removed: the server receives nothing more", async () => {
    const arrivals = arrivalCounter(lab, lab.server, "udp dport 7001");
    await faultUnderFlow(ADDR.service4, 7001, arrivals,
      () => lab.exec(lab.router, ["ip", "route", "del", `${ADDR.service4}/32`]),
      /handed back udp \S+ -> 10\.200\.9\.9:7001 after \d+\+\d+ packets: next hop changed/);
  }, 60_000);

  test("the default route removed: the server receives nothing more", async () => {
    lab.exec(lab.router, ["ip", "route", "del", `${ADDR.service4}/32`]);
    lab.exec(lab.router, ["ip", "route", "add", "default", "via", ADDR.server4, "dev", "wan"]);
    const arrivals = arrivalCounter(lab, lab.server, "udp dport 7001");
    await faultUnderFlow(ADDR.service4, 7001, arrivals,
      () => lab.exec(lab.router, ["ip", "route", "del", "default"]),
      /handed back udp \S+ -> 10\.200\.9\.9:7001 after \d+\+\d+ packets: next hop changed/);
  }, 60_000);

  test("the router's WAN address removed: the server receives nothing more", async () => {
    // Its subnet route goes with it; masquerade also flushes the entries that used the address.
    const arrivals = arrivalCounter(lab, lab.server, "udp dport 7003");
    await faultUnderFlow(ADDR.server4, 7003, arrivals,
      () => lab.exec(lab.router, ["ip", "addr", "del", `${ADDR.routerWan4}/24`, "dev", "wan"]),
      /handed back udp \S+ -> 10\.200\.2\.2:7003 after \d+\+\d+ packets: /);
  }, 60_000);

  test("the router's LAN address removed: the replies stop reaching the client", async () => {
    // The way out still exists; the way back (the LAN subnet route) is gone.
    const arrivals = arrivalCounter(lab, lab.client, "udp sport 7001");
    await faultUnderFlow(ADDR.service4, 7001, arrivals,
      () => lab.exec(lab.router, ["ip", "addr", "del", `${ADDR.routerLan4}/24`, "dev", "lan"]),
      /handed back udp \S+ -> 10\.200\.9\.9:7001 after \d+\+\d+ packets: next hop changed/);
  }, 60_000);
});

describe.each(["xdp-native", "tc"])("a device deleted under offloaded flows (--hook %s)", (hook) => {
  let lab: Lab;
  const children: { kill(): void }[] = [];

  beforeAll(async () => {
    lab = new Lab({ secondWan: true }).create();
    startEchoes(lab, children);
    lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server2_4, "dev", "wan2"]);
    await Bun.sleep(300);
  });

  afterAll(() => {
    for (const c of children) c.kill();
    lab?.destroy();
  });

  test("the flows are handed back, nothing points at the dead device, the daemon goes on and exits cleanly", async () => {
    const off = new Offloader(lab, ["lan", "wan", "wan2", "--hook", hook, "--log-level", "debug"]);
    try {
      await off.waitFor(/running on/);
      const wan2 = (JSON.parse(lab.exec(lab.router, ["ip", "-j", "link", "show", "dev", "wan2"])) as { ifindex: number }[])[0]!.ifindex;
      const client = await startUdpClient(lab, off, ADDR.service4, 3000, 1000);
      expect(off.output).toMatch(/offloaded udp \S+ -> 10\.200\.9\.9:7001 .*lan -> wan2/);
      const done = client.go();
      await Bun.sleep(500);
      lab.exec(lab.router, ["ip", "link", "del", "wan2"]);
      await off.waitFor(/handed back udp \S+ -> 10\.200\.9\.9:7001 after \d+\+\d+ packets: /, 5000);
      await Bun.sleep(SETTLE_MS);
      const { flows, problems } = checkMap(lab, off.dirs.pinPath);
      expect(problems).toEqual([]);
      expect(flows.filter((f) => f.key.ifindex === wan2 || f.action.outIfindex === wan2)).toEqual([]);
      await expectAlive(off.pid, off.dirs.runDir);
      await done;
      // The service moves back behind wan: a new flow is offloaded there and answered.
      lab.exec(lab.router, ["ip", "route", "replace", `${ADDR.service4}/32`, "via", ADDR.server4, "dev", "wan"]);
      const again = await startUdpClient(lab, off, ADDR.service4, 500, 1000);
      const res = await again.go();
      expect(res.received).toBeGreaterThanOrEqual(res.sent - 5);
      expect(errorLines(off.output)).toEqual([]);
    } finally {
      expect(await off.stop()).toBe(0);
    }
    for (const dev of ["lan", "wan"]) {
      expect(lab.exec(lab.router, ["ip", "-d", "link", "show", "dev", dev])).not.toMatch(/xdp/);
      expect(lab.exec(lab.router, ["tc", "filter", "show", "dev", dev, "ingress"]).trim()).toBe("");
    }
  }, 60_000);
});
