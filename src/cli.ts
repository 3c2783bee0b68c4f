// Command line: argument definitions and their validation. Every bad input becomes one
// UsageError line; nothing here touches the system except reading interface names.
import type { ArgsDef } from "citty";
import { LOG_LEVELS, type LogLevel } from "./log.ts";
import type { DaemonConfig, HookChoice } from "./daemon.ts";
import type { DropMode } from "./dropper.ts";
// No shared library may load before a command needs one: `--version` and `--help` work anywhere.
export const DEFAULT_PIN_PATH = "/sys/fs/bpf/ebpf-offloader";
export const DEFAULT_RUN_DIR = "/run/ebpf-offloader";

export class UsageError extends Error {}

// Mirrors DROP_MODES of dropper.ts, which loads libbpf.
export const DROP_MODES = ["off", "blackhole", "learn"] as const satisfies readonly DropMode[];

export const HOOKS = ["auto", "xdp", "xdp-native", "xdp-generic", "tc"] as const satisfies readonly HookChoice[];

export const runArgs = {
  hook: {
    type: "string",
    default: "auto",
    description: "auto (native XDP, else TC) | xdp (native, else generic per device) | xdp-native | xdp-generic | tc",
  },
  "max-flows": { type: "string", default: "65536", description: "Size of the flow map (one entry per direction)" },
  "tcp-timeout": { type: "string", default: "30", description: "Seconds without packets before a TCP flow goes back to the kernel" },
  "udp-timeout": { type: "string", default: "30", description: "Seconds without packets before a UDP flow goes back to the kernel" },
  "heartbeat-timeout": {
    type: "string",
    default: "5",
    description: "Seconds without a daemon heartbeat after which the datapath passes every packet to the kernel",
  },
  drop: {
    type: "string",
    default: "blackhole",
    description: "What to drop at XDP that the kernel drops: off | blackhole (blackhole routes) | learn (also netfilter drops of new flows, learnt from the kernel's verdicts)",
  },
  "drop-timeout": {
    type: "string",
    default: "5",
    description: "Seconds without packets after which a drop entry goes; learnt entries go at the latest after 4 times this",
  },
  "log-level": { type: "string", default: "info", description: LOG_LEVELS.join(" | ") },
  "pin-path": {
    type: "string",
    default: DEFAULT_PIN_PATH,
    description: "bpffs directory for the flow maps (a restarted daemon adopts their flows; `flows` reads them); \"none\" to not pin",
  },
  "run-dir": { type: "string", default: DEFAULT_RUN_DIR, description: "Directory of the status file that `status` reads" },
  pppoe: {
    type: "string",
    default: "",
    description: "PPP device=Ethernet device of its PPPoE session, comma-separated (e.g. pppoe-wan=wan.7); only needed when pppd's command line doesn't tell",
  },
  dsa: {
    type: "boolean",
    default: false,
    description: "Attach to DSA conduits (their switch tags parsed by a program instance per tagger) instead of the DSA user ports",
  },
  "dry-run": { type: "boolean", default: false, description: "Print which devices would be attached, in which mode and why, then exit" },
} as const satisfies ArgsDef;

/** Arguments of `status` and `flows` (src/inspect.ts). */
const runDirArg = { type: "string", default: DEFAULT_RUN_DIR, description: "The daemon's --run-dir" } as const;

export const statusArgs = {
  "run-dir": runDirArg,
  json: { type: "boolean", default: false, description: "Print JSON" },
} as const satisfies ArgsDef;

export const flowsArgs = {
  "run-dir": runDirArg,
  proto: { type: "string", description: "tcp | udp" },
  iface: { type: "string", description: "Only flows entering or leaving this device" },
  state: { type: "string", description: "offloaded | closing | dropped (the dropper's entries)" },
  json: { type: "boolean", default: false, description: "Print JSON" },
} as const satisfies ArgsDef;

export interface RunOptions extends DaemonConfig {
  logLevel: LogLevel;
}

type RawRunArgs = { [K in Exclude<keyof typeof runArgs, "dry-run" | "dsa">]: string } & { "dry-run": boolean; dsa: boolean; _: string[] };

/** "pppoe-wan=wan.7,ppp1=eth1" as a map; every part must name two devices. */
function pppoeMap(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(",").filter(Boolean)) {
    const m = /^([^=\s]{1,15})=([^=\s]{1,15})$/.exec(part);
    if (!m) throw new UsageError(`--pppoe takes PPPDEV=ETHDEV pairs, not "${part}"`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

function integer(name: string, value: string, min: number, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be a whole number from ${min} to ${max}, not "${value}"`);
  }
  return n;
}

function absolutePath(name: string, value: string): string {
  if (!value.startsWith("/") || value.includes("\0")) throw new UsageError(`--${name} must be an absolute path, not "${value}"`);
  return value.replace(/\/+$/, "") || "/";
}

/** Validates `run` arguments. `ifindexOf` returns 0 for an unknown interface. */
export function parseRunArgs(a: RawRunArgs, ifindexOf: (name: string) => number): RunOptions {
  const interfaces = a._.map(String);
  for (const name of interfaces) {
    if (!/^[^\s/:]{1,15}$/.test(name) || ifindexOf(name) === 0) throw new UsageError(`no such interface: ${name}`);
  }
  const dup = interfaces.find((n, i) => interfaces.indexOf(n) !== i);
  if (dup) throw new UsageError(`interface named twice: ${dup}`);
  if (!(HOOKS as readonly string[]).includes(a.hook)) {
    throw new UsageError(`--hook must be one of ${HOOKS.join(", ")}, not "${a.hook}"`);
  }
  if (!(DROP_MODES as readonly string[]).includes(a.drop)) {
    throw new UsageError(`--drop must be one of ${DROP_MODES.join(", ")}, not "${a.drop}"`);
  }
  if (!(LOG_LEVELS as readonly string[]).includes(a["log-level"])) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, not "${a["log-level"]}"`);
  }
  return {
    interfaces,
    hook: a.hook as HookChoice,
    maxFlows: integer("max-flows", a["max-flows"], 16, 16_777_216),
    tcpTimeoutS: integer("tcp-timeout", a["tcp-timeout"], 1, 86_400),
    udpTimeoutS: integer("udp-timeout", a["udp-timeout"], 1, 86_400),
    heartbeatTimeoutS: integer("heartbeat-timeout", a["heartbeat-timeout"], 1, 3600),
    drop: a.drop as DropMode,
    dropTimeoutS: integer("drop-timeout", a["drop-timeout"], 1, 3600),
    logLevel: a["log-level"] as LogLevel,
    pinPath: a["pin-path"] === "none" ? null : absolutePath("pin-path", a["pin-path"]),
    runDir: absolutePath("run-dir", a["run-dir"]),
    pppoe: pppoeMap(a.pppoe),
    dryRun: a["dry-run"],
    dsa: a.dsa,
  };
}

/** citty accepts any flag; an admin's typo must not be silently ignored. */
export function rejectUnknownFlags(rawArgs: readonly string[], def: ArgsDef): void {
  const known = new Set(Object.keys(def).concat(["help", "h"]));
  for (const arg of rawArgs) {
    if (arg === "--") break;
    const m = /^--?([^=]+)/.exec(arg);
    if (m?.[1] && !/^-\d/.test(arg) && !known.has(m[1])) throw new UsageError(`unknown option: ${arg.split("=")[0]}`);
  }
}
