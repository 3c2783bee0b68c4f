// `ebpf-offloader check [IFACE...]`: what this system offers the offloader and what it lacks, one
// line per item. Modules that need a shared library are imported lazily, so a missing library
// becomes a fail line instead of a crash. Nothing is left attached or loaded afterwards.
import type { ArgsDef } from "citty";
import { release } from "node:os";
import type { TrivialPrograms } from "./check-bpf.ts";
import { allInterfaces, type InterfaceFacts, interfaceKind, interfaceLines, isUp } from "./check-interfaces.ts";
import { netfilterChecks } from "./check-netfilter.ts";
import { type CheckResult, fail, oneLine } from "./check-result.ts";
import { bpfEnvironment, forwarding, library, processChecks } from "./check-system.ts";

export const checkArgs = {
  interfaces: { type: "positional", required: false, description: "Interfaces to look at (default: all but lo)" },
  json: { type: "boolean", default: false, description: "Print the checks as JSON" },
  "try-attach": {
    type: "boolean",
    default: false,
    description: "Attach a do-nothing XDP program natively to each interface for a moment (tells native XDP support where the kernel cannot; some drivers reset the link)",
  },
} as const satisfies ArgsDef;

export interface CheckOptions {
  /** Interfaces to look at; empty: every interface but lo. */
  interfaces: string[];
  tryAttach: boolean;
}

type CheckBpf = typeof import("./check-bpf.ts");

async function importOr<T>(load: () => Promise<T>): Promise<T | Error> {
  try {
    return await load();
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

const otherLibraries = () => [library("libnetfilter_conntrack", "libnetfilter_conntrack.so.3"), library("libmnl", "libmnl.so.0")];

async function bpfChecks(bpf: CheckBpf | Error, out: CheckResult[]): Promise<TrivialPrograms | null> {
  if (bpf instanceof Error) {
    const line = library("libbpf", "libbpf.so.1");
    out.push(line.status === "fail" ? line : fail("libbpf", oneLine(bpf), "install libbpf 1.x built for this system's C library"));
    out.push(...otherLibraries());
    out.push(fail("bpf", "not checked without a usable libbpf", "fix the libbpf line first"));
    return null;
  }
  out.push(bpf.libbpfLine(), ...otherLibraries());
  const { result, progs } = bpf.bpfSyscall();
  out.push(result);
  const image = await bpf.embeddedDatapath();
  // libbpf's map probe reports "unsupported" for any failure, EPERM included.
  if (progs) {
    try {
      out.push(bpf.mapTypes(image));
    } catch (e) {
      out.push(fail("bpf maps", oneLine(e), "rebuild the binary (bun build.ts)"));
    }
  }
  out.push(bpf.datapath(image));
  if (progs) out.push(...bpf.attachChecks(progs));
  return progs;
}

async function interfaceChecks(names: string[], tryAttach: boolean, bpf: CheckBpf | Error, progs: TrivialPrograms | null): Promise<CheckResult[]> {
  let ifNameToIndex: (name: string) => number;
  try {
    ({ ifNameToIndex } = await import("../ffi/libc.ts"));
  } catch (e) {
    return names.map((name) => fail(`interface ${name}`, `not checked: ${oneLine(e)}`, "the C library must be found to look interfaces up"));
  }
  let features: Map<number, number> | null = null;
  let note = "";
  try {
    const { queryXdpFeatures } = await import("./genl.ts");
    features = queryXdpFeatures();
    if (features === null) note = `no xdp-features in Linux ${release()}, they need 6.3+`;
  } catch (e) {
    note = `xdp-features unavailable: ${oneLine(e)}`;
  }
  const lines: CheckResult[] = [];
  for (const name of names) {
    const ifindex = ifNameToIndex(name);
    const facts: InterfaceFacts = {
      name, ifindex, kind: ifindex ? interfaceKind(name) : null, up: ifindex ? isUp(name) : false,
      features: features?.get(ifindex) ?? null, featuresNote: note, featuresAttached: null,
      attachedProgram: null, trial: null,
    };
    if (ifindex && !(bpf instanceof Error)) {
      const id = bpf.attachedXdpProgram(ifindex);
      facts.attachedProgram = id >= 0 ? id : null;
      if (tryAttach && progs && !facts.attachedProgram) {
        const t = bpf.tryNativeXdp(progs, name);
        if (t.ok) {
          try {
            // Some drivers (virtio_net) offer XDP transmit only while a program is attached.
            if (features) facts.featuresAttached = (await import("./genl.ts")).queryXdpFeatures()?.get(ifindex) ?? null;
          } finally {
            t.detach();
          }
        }
        facts.trial = t.ok ? "ok" : t.message;
      }
    }
    lines.push(...interfaceLines(facts));
  }
  return lines;
}

export async function runChecks(opts: CheckOptions): Promise<CheckResult[]> {
  const out = processChecks();
  const bpf = await importOr(() => import("./check-bpf.ts"));
  let progs: TrivialPrograms | null = null;
  try {
    progs = await bpfChecks(bpf, out);
    out.push(...bpfEnvironment());
    out.push(...(await netfilterChecks()), forwarding());
    const names = opts.interfaces.length ? opts.interfaces : allInterfaces();
    out.push(...(await interfaceChecks(names, opts.tryAttach, bpf, progs)));
  } finally {
    progs?.close();
  }
  return out;
}
