// The OpenWrt package: the procd init script's translation of /etc/config/ebpf-offloader into the
// command line of `run`, run by a POSIX shell (Debian's dash) with stand-ins for OpenWrt's UCI
// and procd shell functions that record every call; the translated command line is then given to
// the real binary. And the package Makefile's promises (dependencies, no stripping).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN } from "./offloader.ts";

const DIR = join(import.meta.dir, "..", "packaging", "openwrt");
const INIT = join(DIR, "files", "ebpf-offloader.init");
const CONFIG = join(DIR, "files", "ebpf-offloader.config");

const STUBS = join(import.meta.dir, "fixtures", "openwrt-stubs.sh");

type Uci = Record<string, string | string[]>;

/** The options of section `main` in a UCI file (config/option/list lines, quoted values). */
function parseUci(text: string): Uci {
  const out: Uci = {};
  let inMain = false;
  for (const raw of text.split("\n")) {
    const m = /^\s*(config|option|list)\s+(\S+)(?:\s+'([^']*)')?/.exec(raw);
    if (!m) continue;
    const [, kind, key, value = ""] = m;
    if (kind === "config") inMain = value === "main";
    else if (inMain && kind === "option") out[key!] = value;
    else if (inMain && kind === "list") out[key!] = [...((out[key!] as string[] | undefined) ?? []), value];
  }
  return out;
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function uciShell(uci: Uci): string {
  return Object.entries(uci)
    .map(([k, v]) => Array.isArray(v)
      ? `UCI_main_${k}=${shq(v.join(" "))}\nUCILIST_main_${k}=${shq(v.join(" "))}`
      : `UCI_main_${k}=${shq(v)}`)
    .join("\n");
}

interface Call {
  fn: string;
  args: string[];
}

interface Translation {
  calls: Call[];
  /** procd instance parameters after every set and append. */
  params: Map<string, string[]>;
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), `eo-openwrt-${process.pid}-`));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Sources the init script with the stubs and the given UCI values, runs start_service and service_triggers. */
function translate(uci: Uci): Translation {
  const id = Math.random().toString(36).slice(2, 8);
  const rec = join(tmp, `rec-${id}`);
  const values = join(tmp, `uci-${id}.sh`);
  writeFileSync(values, uciShell(uci));
  writeFileSync(rec, "");
  const r = Bun.spawnSync(["sh", "-c", `. "$1"; . "$2"; . "$3"; start_service; service_triggers`, "sh", STUBS, values, INIT], {
    env: { REC: rec, PATH: process.env.PATH ?? "/usr/bin:/bin" },
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`sh: exit ${r.exitCode}: ${r.stderr.toString()}`);
  expect(r.stderr.toString()).toBe("");
  const calls = readFileSync(rec, "utf8").split("\n").filter(Boolean).map((l) => {
    const [fn = "", ...args] = l.split("\x1f");
    return { fn, args };
  });
  const params = new Map<string, string[]>();
  for (const { fn, args } of calls) {
    const [name = "", ...vals] = args;
    if (fn === "procd_set_param") params.set(name, vals);
    else if (fn === "procd_append_param") params.set(name, [...(params.get(name) ?? []), ...vals]);
  }
  return { calls, params };
}

const shipped = parseUci(readFileSync(CONFIG, "utf8"));

describe("procd init script", () => {
  test("the shipped config is disabled: no instance", () => {
    expect(shipped.enabled).toBe("0");
    const t = translate(shipped);
    expect(t.calls.map((c) => c.fn)).not.toContain("procd_open_instance");
    expect(t.calls[0]).toEqual({ fn: "config_load", args: ["ebpf-offloader"] });
  });

  test("enabled: every option becomes its flag, the list the devices; respawn, logd, memlock", () => {
    const t = translate({ ...shipped, enabled: "1", interfaces: ["br-lan", "eth1"] });
    expect(t.params.get("command")).toEqual([
      "/usr/sbin/ebpf-offloader", "run", "--hook", "auto", "--max-flows", "65536", "--tcp-timeout", "30",
      "--udp-timeout", "30", "--heartbeat-timeout", "5", "--drop", "blackhole", "--drop-timeout", "5", "--log-level", "info", "br-lan", "eth1",
    ]);
    // procd restarts the instance on a reload when one of these was re-created (new ifindex).
    expect(t.params.get("netdev")).toEqual(["br-lan", "eth1"]);
    expect(t.params.get("respawn")).toEqual(["3600", "5", "5"]);
    expect(t.params.get("stderr")).toEqual(["1"]);
    expect(t.params.get("stdout")).toEqual(["1"]);
    expect(t.params.get("limits")).toEqual(["memlock=unlimited"]);
    const fns = t.calls.map((c) => c.fn);
    expect(fns.indexOf("procd_open_instance")).toBeLessThan(fns.indexOf("procd_close_instance"));
    expect(fns).not.toContain("logger");
  });

  test("config changes reload; netifd interface events reload (procd restarts only on a changed command line or ifindex)", () => {
    const triggers = translate({ ...shipped, enabled: "1" }).calls.filter((c) => c.fn.startsWith("procd_add_"));
    expect(triggers).toEqual([
      { fn: "procd_add_reload_trigger", args: ["ebpf-offloader"] },
      { fn: "procd_add_raw_trigger", args: ["interface.*", "2000", "/etc/init.d/ebpf-offloader", "reload"] },
    ]);
  });

  test("options left out fall back to the binary's defaults", () => {
    const t = translate({ enabled: "1", interfaces: ["wan"], hook: "tc" });
    expect(t.params.get("command")).toEqual(["/usr/sbin/ebpf-offloader", "run", "--hook", "tc", "wan"]);
  });

  test("interfaces auto (shipped): no device names, the daemon discovers the routed interfaces", () => {
    expect(shipped.interfaces).toBe("auto");
    const t = translate({ ...shipped, enabled: "1" });
    expect(t.params.get("command")?.slice(-2)).toEqual(["--log-level", "info"]);
    expect(t.params.get("netdev")).toBeUndefined();
  });

  test("interfaces as one option with several names", () => {
    const t = translate({ enabled: "1", interfaces: "lan1 wan" });
    expect(t.params.get("command")).toEqual(["/usr/sbin/ebpf-offloader", "run", "lan1", "wan"]);
    expect(t.params.get("netdev")).toEqual(["lan1", "wan"]);
  });

  test("enabled and dsa accept UCI's boolean spellings; dsa 1 is run --dsa", () => {
    expect(translate({ enabled: "yes", interfaces: ["x"] }).params.get("command")).toBeDefined();
    expect(translate({ enabled: "off", interfaces: ["x"] }).params.get("command")).toBeUndefined();
    expect(translate({ enabled: "on", interfaces: ["x"], dsa: "1" }).params.get("command")).toEqual(["/usr/sbin/ebpf-offloader", "run", "--dsa", "x"]);
    expect(translate({ enabled: "on", interfaces: ["x"], dsa: "off" }).params.get("command")).not.toContain("--dsa");
  });

  test("the binary accepts the translated command line", async () => {
    const NS = `eo-owrt-${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
    const sh = (cmd: string[]) => expect(Bun.spawnSync(cmd, { stderr: "pipe" }).exitCode).toBe(0);
    try {
      sh(["ip", "netns", "add", NS]);
      sh(["ip", "-n", NS, "link", "add", "owa", "type", "veth", "peer", "name", "owb"]);
      const t = translate({ ...shipped, enabled: "1", interfaces: ["owa", "owb"], hook: "tc", log_level: "debug" });
      const [, ...args] = t.params.get("command") ?? [];
      const proc = Bun.spawn(["ip", "netns", "exec", NS, BIN, ...args], { stdout: "pipe", stderr: "pipe" });
      let log = "";
      const reading = (async () => {
        for await (const chunk of proc.stderr) log += new TextDecoder().decode(chunk);
      })();
      for (let i = 0; i < 100 && !/running on owa, owb/.test(log) && proc.exitCode === null; i++) await Bun.sleep(50);
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      await reading;
      expect(log).toContain("attached to owa (tc)");
      expect(log).toContain("running on owa, owb");
    } finally {
      Bun.spawnSync(["ip", "netns", "del", NS]);
    }
  });
});

describe("package Makefile", () => {
  const mk = readFileSync(join(DIR, "Makefile"), "utf8");

  test("depends on the libraries the binary opens and on libstdc++ (bun's musl runtime)", () => {
    const deps = /DEPENDS:=([^\n]*(?:\\\n[^\n]*)*)/.exec(mk)?.[1]?.replace(/\\\n/g, " ") ?? "";
    for (const d of ["+libbpf", "+libnetfilter-conntrack", "+libmnl", "+libstdcpp"]) expect(deps.split(/\s+/)).toContain(d);
  });

  test("never strips (strip removes the embedded application) and installs the musl binary checked against SHA256SUMS", () => {
    expect(mk).toMatch(/^STRIP:=:$/m);
    expect(mk).toMatch(/^RSTRIP:=:$/m);
    // After package.mk, which sets them.
    expect(mk.indexOf("STRIP:=:")).toBeGreaterThan(mk.indexOf("include $(INCLUDE_DIR)/package.mk"));
    expect(mk).toContain("ebpf-offloader-linux-$(EBPF_OFFLOADER_ARCH)-musl");
    expect(mk).toContain("sha256sum -c");
    expect(mk).toMatch(/INSTALL_BIN\) \.\/files\/ebpf-offloader\.init \$\(1\)\/etc\/init\.d\/ebpf-offloader/);
    expect(mk).toMatch(/INSTALL_CONF\) \.\/files\/ebpf-offloader\.config \$\(1\)\/etc\/config\/ebpf-offloader/);
  });

  test("the init script is a procd script started after the network and firewall", () => {
    const init = readFileSync(INIT, "utf8");
    expect(init.split("\n")[0]).toBe("#!/bin/sh /etc/rc.common");
    expect(init).toMatch(/^USE_PROCD=1$/m);
    expect(Number(/^START=(\d+)$/m.exec(init)?.[1])).toBeGreaterThan(20);
  });
});
