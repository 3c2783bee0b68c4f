// Time from ESTABLISHED to offloaded, measured from the client's side: run in the client
// namespace, it opens TCP connections one at a time and, for each, polls the offloader's pinned
// flow map (every 0.2 ms, sleeping in between) from the moment connect() completes until the
// connection's lan -> wan entry appears. connect() completes when the client sends the
// handshake's last ACK, a few microseconds before the router's conntrack sees it: the figures
// include that much.
//
//   bun bench/ttoffload.ts PIN_PATH LAN_IFINDEX FAMILY CLIENT_ADDR SERVER_ADDR PORT COUNT
// Prints {"ms":[...],"missed":N}.
import { connect, type Socket } from "node:net";
import { AF_INET, AF_INET6, IPPROTO_TCP, LAYOUT, encodeKey } from "../src/abi.ts";
import { BpfMap } from "../src/bpf.ts";
import { addr16 } from "../test/packet.ts";

const [pinPath, lanIfindex, family, clientAddr, serverAddr, port, count] = Bun.argv.slice(2);
const n = Number(count);
if (!pinPath || !serverAddr || !clientAddr || !(n > 0) || (family !== "4" && family !== "6")) {
  console.error("usage: bun bench/ttoffload.ts PIN_PATH LAN_IFINDEX FAMILY CLIENT_ADDR SERVER_ADDR PORT COUNT");
  process.exit(2);
}
const POLL_MS = 0.2;
const GIVE_UP_MS = 1000;
const flows = BpfMap.openPinned(`${pinPath}/flows`);
const value = new Uint8Array(new ArrayBuffer(LAYOUT.flow_action.size));
const nap = new Int32Array(new SharedArrayBuffer(4));

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: serverAddr, port: Number(port), family: Number(family) });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

const ms: number[] = [];
let missed = 0;
for (let i = 0; i < n; i++) {
  const s = await open();
  const t0 = performance.now();
  const key = encodeKey({
    ifindex: Number(lanIfindex), family: family === "4" ? AF_INET : AF_INET6, proto: IPPROTO_TCP, dsaPort: 0, vlan: [0, 0],
    pppoeSid: 0, sport: s.localPort ?? 0, dport: Number(port), saddr: addr16(clientAddr), daddr: addr16(serverAddr),
  });
  let found = false;
  while (performance.now() - t0 < GIVE_UP_MS) {
    if (flows.lookup(key, value)) {
      found = true;
      break;
    }
    Atomics.wait(nap, 0, 0, POLL_MS);
  }
  if (found) ms.push(performance.now() - t0);
  else missed++;
  s.end();
  await Bun.sleep(5 + Math.random() * 10); // not in step with the daemon's timers
}
console.log(JSON.stringify({ ms, missed }));
process.exit(0);
