// `npm run demo`: a virtual NAT router in network namespaces, the offloader on it, TCP and UDP
// traffic through it, and what was offloaded. Everything is removed at the end, also on Ctrl-C.
import { ADDR, Lab, removeStaleLabs } from "../test/lab.ts";
import { Offloader } from "../test/offloader.ts";

const FIX = `${import.meta.dir}/../test/fixtures`;
const BUN = process.execPath;
const say = (s: string) => console.log(`\n== ${s}`);

if (process.getuid?.() !== 0) {
  console.error("demo: run as root (it builds network namespaces and loads BPF)");
  process.exit(1);
}
removeStaleLabs("eodemo");
const lab = new Lab({ prefix: "eodemo" }).create();
const children: { kill(): void }[] = [];
const cleanup = () => {
  for (const c of children) c.kill();
  lab.destroy();
};
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

async function tcp(host: string, mib: number): Promise<{ seconds: number; ok: boolean }> {
  const p = lab.spawn(lab.client, [BUN, `${FIX}/tcp-send.ts`, host, "5201", String(mib)]);
  const out = new Response(p.stdout).text();
  await Bun.sleep(300); // connected: give the offloader time to take the connection over
  const t0 = performance.now();
  p.stdin.write("go\n");
  p.stdin.flush();
  const last = (await out).trim().split("\n").pop() ?? "{}";
  const r = JSON.parse(last) as { sent?: string; reply?: { sha256: string } };
  return { seconds: (performance.now() - t0) / 1000, ok: r.sent !== undefined && r.sent === r.reply?.sha256 };
}

try {
  say(`lab: client ${ADDR.client4} -- [lan] router (nftables masquerade) [wan] -- server ${ADDR.server4}`);
  children.push(lab.spawn(lab.server, [BUN, `${FIX}/tcp-sink.ts`, "5201"]));
  children.push(lab.spawn(lab.server, [BUN, `${FIX}/udp-echo.ts`, "7001"]));
  await Bun.sleep(300);

  say("1. kernel path only: 256 MiB over TCP");
  let fwd = lab.forwardedPackets();
  const k = await tcp(ADDR.server4, 256);
  console.log(`   ${k.ok ? "intact" : "CORRUPTED"} in ${k.seconds.toFixed(2)} s; the router's forward chain saw ${lab.forwardedPackets() - fwd} packets`);

  say("2. start ebpf-offloader on the router: ebpf-offloader run lan wan --log-level debug");
  const off = new Offloader(lab, ["lan", "wan", "--log-level", "debug"]);
  children.push({ kill: () => off.kill("SIGTERM") });
  await off.waitFor(/running on/);
  let shown = 0;
  // The log, less the debug lines about flows still in their handshake.
  const showLog = () => {
    const more = off.output.slice(shown).split("\n").filter((l) => l && !l.includes("not offloaded yet"));
    shown = off.output.length;
    if (more.length) console.log(more.map((l) => `   | ${l}`).join("\n"));
  };
  showLog();

  say("3. the same 256 MiB over TCP, IPv4 and IPv6, and a UDP stream, with the offloader");
  fwd = lab.forwardedPackets();
  const udp = lab.spawn(lab.client, [BUN, `${FIX}/udp-send.ts`, ADDR.server4, "7001", "4000"]);
  const udpOut = new Response(udp.stdout).text();
  await Bun.sleep(300);
  udp.stdin.write("go\n");
  udp.stdin.flush();
  const [o4, o6] = [await tcp(ADDR.server4, 256), await tcp(ADDR.server6, 256)];
  showLog();
  console.log(`   IPv4 ${o4.ok ? "intact" : "CORRUPTED"} in ${o4.seconds.toFixed(2)} s, IPv6 ${o6.ok ? "intact" : "CORRUPTED"} in ${o6.seconds.toFixed(2)} s`);

  say("4. the flow table while the UDP stream runs (SIGUSR1 prints it)");
  off.kill("SIGUSR1");
  await off.waitFor(/connection\(s\) offloaded[\s\S]*udp/);
  showLog();
  const u = JSON.parse((await udpOut).trim().split("\n").pop() ?? "{}") as { sent: number; received: number };
  console.log(`   UDP: ${u.received} of ${u.sent} datagrams echoed back`);
  console.log(`   the forward chain saw ${lab.forwardedPackets() - fwd} packets this time: the rest took the fast path`);

  say("5. stop the offloader (SIGTERM): it detaches and traffic stays on the kernel path");
  await off.stop();
  showLog();
} finally {
  cleanup();
  say("lab removed");
}
