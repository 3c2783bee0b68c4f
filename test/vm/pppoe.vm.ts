// Inside the VM (npm run test:vm): the most common OpenWrt WAN, PPPoE inside VLAN 7 (and inside
// QinQ), with a bridged LAN and NAT on the PPP device. The offloader, named the routed devices
// (br-lan, pppoe-wan), must attach to the lowest ones (lan1, wan), carry TCP and UDP over IPv4 and
// IPv6 past the forward chain with the VLAN and PPPoE headers put on and taken off in the fast
// path, and deliver the data intact.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { udpSocketDrops } from "../lab.ts";
import { BUN, FIX, Output } from "../traffic.ts";
import { Daemon, esc, within } from "./daemon.ts";
import { PPPOE_SID, PppoeLab, VADDR, type VlanLayer } from "./pppoe-lab.ts";

const MIB = 16;
const SID = `pppoe 0x${PPPOE_SID.toString(16)}`;

interface Stack {
  name: string;
  vlans: VlanLayer[];
  /** pppd's ifname; null: none given (pppd names it ppp0, as Debian's pon does). */
  pppIfname?: string | null;
  /** The encapsulation as the daemon's log shows it. */
  encap: string;
  hooks: string[];
  families: (4 | 6)[];
  udp: boolean;
}

const STACKS: Stack[] = [
  {
    name: "PPPoE in VLAN 7", vlans: [{ proto: "802.1Q", id: 7 }], encap: `[vlan 7, ${SID}]`,
    hooks: ["auto", "tc"], families: [4, 6], udp: true,
  },
  {
    // Full-size frames with both tags in the frame are 4 bytes longer than in VLAN 7: 1492 + 8
    // (PPPoE) + 2 * 4 (tags) + 14; TC carries the outer tag as metadata, as the kernel does.
    name: "PPPoE in QinQ 100/7", vlans: [{ proto: "802.1ad", id: 100 }, { proto: "802.1Q", id: 7 }],
    encap: `[s-vlan 100, vlan 7, ${SID}]`, hooks: ["auto", "tc"], families: [4], udp: true,
  },
  {
    // No "ifname": the daemon cannot pair by pppd's command line and must pair by elimination.
    name: "PPPoE in VLAN 7, pppd without ifname (ppp0)", vlans: [{ proto: "802.1Q", id: 7 }], pppIfname: null,
    encap: `[vlan 7, ${SID}]`, hooks: ["auto"], families: [4], udp: false,
  },
];

/** Traffic generators of the running test: killed when it ends, so a failed one does not disturb the next. */
const clients: { kill(): void }[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.kill();
});

/** Starts tcp-send in the client namespace and waits until both directions are offloaded. */
async function tcpClient(lab: PppoeLab, off: Daemon, host: string, encap: string) {
  const proc = lab.spawn(lab.client, [BUN, `${FIX}/tcp-send.ts`, host, "5201", String(MIB)]);
  clients.push(proc);
  const out = new Output(proc.stdout);
  await out.waitLine(/^ready/);
  await off.waitFor(new RegExp(`offloaded tcp \\S+ -> \\S+:5201 .*lan1 -> wan ${esc(encap)}\\n`));
  await off.waitFor(new RegExp(`offloaded tcp \\S+:5201 -> .* wan ${esc(encap)} -> lan1\\n`));
  return async () => {
    proc.stdin.write("go\n");
    proc.stdin.flush();
    const last = await out.lastLine();
    expect(await proc.exited).toBe(0);
    return JSON.parse(last) as { sent: string; reply: { sha256: string; bytes: number; peer: string } };
  };
}

for (const stack of STACKS) {
  describe(stack.name, () => {
    let lab: PppoeLab;
    const servers: { kill(): void }[] = [];

    beforeAll(async () => {
      lab = await new PppoeLab({ vlans: stack.vlans, pppIfname: stack.pppIfname }).create();
      servers.push(lab.spawn(lab.isp, [BUN, `${FIX}/tcp-sink.ts`, "5201"]));
      // Bound to the server address: replies from the ISP's PPP address would miss the NAT mapping.
      servers.push(lab.spawn(lab.isp, [BUN, `${FIX}/udp-echo.ts`, "7001", VADDR.server4]));
      await Bun.sleep(2000); // bun starts slowly under emulation
    });

    afterAll(() => {
      for (const s of servers) s.kill();
      lab?.destroy();
    });

    for (const hook of stack.hooks) {
      for (const family of hook === "auto" ? stack.families : [4]) {
        test(`--hook ${hook}: TCP over IPv${family} offloaded on lan1 and wan, intact, NATed`, async () => {
          const off = new Daemon(lab.router, ["br-lan", lab.ppp, "--hook", hook, "--log-level", "debug"]);
          try {
            await off.waitFor(/running on/);
            expect(off.output).toMatch(new RegExp(`attaching to wan: ${lab.ppp} > ${lab.sessionDev.replace(/\./g, "\\.")}`));
            const go = await tcpClient(lab, off, family === 4 ? VADDR.server4 : VADDR.server6, stack.encap);
            const before = lab.forwardedPackets();
            const res = await within(go(), 60_000, off);
            expect(res.reply.sha256).toBe(res.sent);
            expect(res.reply.bytes).toBe(MIB * 1024 * 1024 + 1024);
            expect(res.reply.peer.replace(/^::ffff:/, "")).toBe(family === 4 ? VADDR.routerWan4 : VADDR.routerWan6);
            const m = await off.waitFor(/handed back tcp \S+ -> \S+:5201 after (\d+)\+(\d+) packets: FIN\/RST/);
            const forwarded = lab.forwardedPackets() - before;
            console.log(`${stack.name}, --hook ${hook}, IPv${family}: fast path ${m[1]}+${m[2]} packets; forward chain saw ${forwarded}`);
            if (stack.vlans.length < 2 || hook === "tc") {
              // 16 MiB in segments of at most 1452 bytes (PPPoE MTU 1492): over 11,000 of them, nearly
              // all full-size. QinQ on TC: the outer tag goes out as skb metadata and the ISP's 802.1ad
              // and 802.1Q devices take the frames apart (the data arrived intact). The forward chain
              // sees only the tail after the FIN (the ACKs of the data still in flight: a few dozen,
              // more when the guest is starved): under 5% of what the fast path carried.
              expect(Number(m[1])).toBeGreaterThan(10_000);
              expect(forwarded).toBeLessThan((Number(m[1]) + Number(m[2])) / 20);
            } else {
              // QinQ on XDP: both tags go into the frame, so full-size segments would be 4 bytes too
              // long for the device and go to the kernel; the ACKs coming back take the fast path.
              expect(Number(m[2])).toBeGreaterThan(1_000);
            }
            expect(lab.invalidPackets()).toBe(0);
          } finally {
            expect(await off.stop()).toBe(0);
          }
        }, 300_000);
      }

      if (stack.udp) test(`--hook ${hook}: UDP over IPv4 offloaded both ways after the first packets`, async () => {
        const off = new Daemon(lab.router, ["br-lan", lab.ppp, "--hook", hook, "--log-level", "debug"]);
        try {
          await off.waitFor(/running on/);
          const proc = lab.spawn(lab.client, [BUN, `${FIX}/udp-send.ts`, VADDR.server4, "7001", "2000", "500"]);
          clients.push(proc);
          const out = new Output(proc.stdout);
          const sport = (await out.waitLine(/^ready/)).split(" ")[1];
          await off.waitFor(new RegExp(`offloaded udp \\S+:${sport} -> \\S+:7001 .*lan1 -> wan ${esc(stack.encap)}\\n`));
          await off.waitFor(new RegExp(`offloaded udp \\S+:7001 -> \\S+:${sport} .*wan ${esc(stack.encap)} -> lan1\\n`));
          const before = lab.forwardedPackets();
          const [client0, isp0] = [udpSocketDrops(lab.client), udpSocketDrops(lab.isp)];
          proc.stdin.write("go\n");
          proc.stdin.flush();
          const res = JSON.parse(await within(out.lastLine(), 60_000, off)) as { sent: number; received: number };
          expect(await proc.exited).toBe(0);
          // Every datagram came back, or an endpoint's socket dropped it (bun starved under
          // emulation cannot always keep up): the router lost none.
          const [clientDrops, ispDrops] = [udpSocketDrops(lab.client) - client0, udpSocketDrops(lab.isp) - isp0];
          console.log(`${stack.name}, --hook ${hook}: ${res.received} of ${res.sent} echoes back; sockets dropped ${clientDrops} (client), ${ispDrops} (server)`);
          expect(res.received + clientDrops + ispDrops).toBe(res.sent);
          expect(res.received).toBeGreaterThan(res.sent * 0.8);
          expect(lab.forwardedPackets() - before).toBe(0);
          off.kill("SIGUSR1");
          const m = await off.waitFor(/udp \S+ -> \S+:7001 .*orig lan1->wan packets=(\d+) .*reply wan->lan1 packets=(\d+)/);
          expect(Number(m[1])).toBeGreaterThanOrEqual(2000);
          // (A request the server's socket dropped has no echo.)
          expect(Number(m[2])).toBeGreaterThanOrEqual(2000 - ispDrops);
        } finally {
          expect(await off.stop()).toBe(0);
        }
      }, 300_000);
    }
  });
}
