// attach()/detach() on veth pairs in a throwaway network namespace. The attaching side runs as a
// child process inside the namespace (fixtures/attach-child.ts), which also lets the tests kill
// it and watch the kernel drop the XDP link.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { constants } from "node:os";
import { join } from "node:path";
import { attach, AttachError, TC_HANDLE, TC_PRIORITY, type Hook } from "../src/attach.ts";
import { BpfObject } from "../src/bpf.ts";
import { buildMini, type MiniObject } from "./fixtures/mini.ts";

const NS = `eo-attach-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
const CHILD = join(import.meta.dir, "fixtures", "attach-child.ts");
const XDP_ATTACHED_DRV = 1;
const XDP_ATTACHED_SKB = 2;

let mini: MiniObject;
const children = new Set<Child>();

function sh(cmd: string[], allowFail = false): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

interface XdpState {
  mode: number;
  prog: { id: number; name: string };
}
function xdpOf(dev: string): XdpState | undefined {
  const links = JSON.parse(sh(["ip", "-n", NS, "-j", "link", "show", "dev", dev])) as { xdp?: XdpState }[];
  return links[0]?.xdp;
}

interface TcFilter {
  pref: number;
  options?: { handle: string; prog?: { name: string } };
}
function ourFilters(dev: string): TcFilter[] {
  const filters = JSON.parse(sh(["tc", "-n", NS, "-j", "filter", "show", "dev", dev, "ingress"]) || "[]") as TcFilter[];
  return filters.filter((f) => f.options?.handle === `0x${TC_HANDLE.toString(16)}` && f.pref === TC_PRIORITY);
}
function hasClsact(dev: string): boolean {
  const qdiscs = JSON.parse(sh(["tc", "-n", NS, "-j", "qdisc", "show", "dev", dev])) as { kind: string }[];
  return qdiscs.some((q) => q.kind === "clsact");
}

type Message =
  | { attached: { ifindex: number; ifname: string; hook: Hook } }
  | { error: { name: string; message: string; errno: number } }
  | { detached: true };

class Child {
  private readonly proc;
  private readonly lines: AsyncIterator<string>;

  constructor(ifname: string, hook: Hook) {
    this.proc = Bun.spawn(["ip", "netns", "exec", NS, process.execPath, CHILD, mini.path, ifname, hook], {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "inherit",
    });
    children.add(this);
    this.lines = this.readLines();
  }

  private async *readLines(): AsyncGenerator<string> {
    let buffered = "";
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stdout) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        yield buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
      }
    }
  }

  async next(): Promise<Message> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`attach child exited (${await this.proc.exited}) without a message`);
    return JSON.parse(r.value) as Message;
  }

  async detach(): Promise<Message> {
    this.proc.stdin.write("detach\n");
    await this.proc.stdin.flush();
    const m = await this.next();
    await this.exit();
    return m;
  }

  async kill(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.exit();
  }

  async exit(): Promise<number> {
    const code = await this.proc.exited;
    children.delete(this);
    return code;
  }
}

async function attached(ifname: string, hook: Hook): Promise<Child> {
  const child = new Child(ifname, hook);
  const m = await child.next();
  if (!("attached" in m)) {
    await child.kill();
    throw new Error(`attach ${hook} on ${ifname}: ${JSON.stringify(m)}`);
  }
  expect(m.attached).toMatchObject({ ifname, hook });
  expect(m.attached.ifindex).toBeGreaterThan(0);
  return child;
}

/** The kernel releases a dead process's files asynchronously: wait for the link to go. */
async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (cond()) return;
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(() => {
  mini = buildMini();
  sh(["ip", "netns", "add", NS]);
  sh(["ip", "-n", NS, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
  for (const dev of ["lo", "v0", "v1"]) sh(["ip", "-n", NS, "link", "set", dev, "up"]);
});

afterAll(async () => {
  for (const c of [...children]) await c.kill();
  sh(["ip", "netns", "del", NS], true);
  mini?.remove();
});

describe("XDP", () => {
  for (const [hook, mode] of [["xdp-native", XDP_ATTACHED_DRV], ["xdp-generic", XDP_ATTACHED_SKB]] as const) {
    test(`${hook}: attached in ${mode === XDP_ATTACHED_DRV ? "driver" : "generic"} mode, detach removes it`, async () => {
      const child = await attached("v0", hook);
      expect(xdpOf("v0")).toMatchObject({ mode, prog: { name: "mini_xdp" } });
      expect(await child.detach()).toEqual({ detached: true });
      expect(xdpOf("v0")).toBeUndefined();
    });
  }

  test("the XDP link goes away when the process dies (fail open)", async () => {
    const child = await attached("v0", "xdp-native");
    expect(xdpOf("v0")?.mode).toBe(XDP_ATTACHED_DRV);
    await child.kill();
    await waitFor(() => xdpOf("v0") === undefined, "the XDP link of a killed process to disappear");
  });

  test("native mode on a driver without XDP support (loopback): clear error", async () => {
    const child = new Child("lo", "xdp-native");
    const m = await child.next();
    expect(await child.exit()).toBe(1);
    expect(m).toEqual({
      error: {
        name: "AttachError",
        message: "lo: XDP native mode is not supported by this driver (EOPNOTSUPP)",
        errno: constants.errno.EOPNOTSUPP,
      },
    });
  });

  test("refuses an interface that already has someone else's XDP program, and leaves it", async () => {
    sh(["ip", "-n", NS, "link", "set", "dev", "v1", "xdpgeneric", "obj", mini.path, "sec", "xdp"]);
    try {
      const foreign = xdpOf("v1");
      expect(foreign?.mode).toBe(XDP_ATTACHED_SKB);
      for (const hook of ["xdp-native", "xdp-generic"] as const) {
        const child = new Child("v1", hook);
        const m = await child.next();
        expect(await child.exit()).toBe(1);
        expect(m).toMatchObject({ error: { name: "AttachError", errno: constants.errno.EBUSY } });
        if ("error" in m) expect(m.error.message).toContain(`v1: another XDP program (id ${foreign?.prog.id}) is already attached`);
      }
      expect(xdpOf("v1")?.prog.id).toBe(foreign?.prog.id);
    } finally {
      sh(["ip", "-n", NS, "link", "set", "dev", "v1", "xdpgeneric", "off"]);
    }
  });
});

describe("TC", () => {
  test("adds clsact and our ingress filter; detach removes both", async () => {
    expect(hasClsact("v0")).toBe(false);
    const child = await attached("v0", "tc");
    expect(hasClsact("v0")).toBe(true);
    const filters = ourFilters("v0");
    expect(filters).toHaveLength(1);
    expect(filters[0]?.options?.prog?.name).toBe("mini_tc");
    expect(await child.detach()).toEqual({ detached: true });
    expect(ourFilters("v0")).toHaveLength(0);
    expect(hasClsact("v0")).toBe(false);
  });

  test("keeps a clsact qdisc it did not create", async () => {
    sh(["tc", "-n", NS, "qdisc", "add", "dev", "v1", "clsact"]);
    try {
      const child = await attached("v1", "tc");
      expect(ourFilters("v1")).toHaveLength(1);
      await child.detach();
      expect(ourFilters("v1")).toHaveLength(0);
      expect(hasClsact("v1")).toBe(true);
    } finally {
      sh(["tc", "-n", NS, "qdisc", "del", "dev", "v1", "clsact"], true);
    }
  });

  test("replaces the filter a killed run left behind", async () => {
    try {
      const crashed = await attached("v0", "tc");
      await crashed.kill();
      expect(ourFilters("v0")).toHaveLength(1); // TC filters outlive their process
      const child = await attached("v0", "tc");
      expect(ourFilters("v0")).toHaveLength(1);
      await child.detach();
      expect(ourFilters("v0")).toHaveLength(0);
    } finally {
      sh(["tc", "-n", NS, "qdisc", "del", "dev", "v0", "clsact"], true);
    }
  });
});

for (const hook of ["xdp-native", "tc"] as const) {
  test(`${hook}: detach after the interface vanished`, async () => {
    sh(["ip", "-n", NS, "link", "add", "g0", "type", "veth", "peer", "name", "g1"]);
    try {
      const child = await attached("g0", hook);
      sh(["ip", "-n", NS, "link", "del", "g0"]);
      expect(await child.detach()).toEqual({ detached: true });
    } finally {
      sh(["ip", "-n", NS, "link", "del", "g0"], true);
    }
  });
}

test("unknown interface", () => {
  const obj = BpfObject.open(mini.bytes, { name: "mini" });
  try {
    obj.load();
    const name = `nx${Math.random().toString(36).slice(2, 9)}`;
    for (const hook of ["xdp-native", "xdp-generic", "tc"] as const) {
      expect(() => attach(obj.programFd("mini_xdp"), obj.programFd("mini_tc"), name, hook)).toThrow(
        new AttachError(`no such interface: ${name}`),
      );
    }
  } finally {
    obj.close();
  }
});
