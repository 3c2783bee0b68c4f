// ebpf-offloader entry point.
import { type CommandDef, defineCommand, runCommand, showUsage } from "citty";
import pkg from "../package.json" with { type: "json" };
import { checkArgs, runChecks } from "./check.ts";
import { formatJson, formatText } from "./check-result.ts";
import { UsageError, flowsArgs, parseRunArgs, rejectUnknownFlags, runArgs, statusArgs } from "./cli.ts";
import { Logger } from "./log.ts";

// Bare library names must never resolve to files in the working directory (see ffi/).
process.chdir("/");

const run = defineCommand({
  meta: { name: "run", description: "Offload forwarded connections between the given interfaces (foreground)" },
  args: runArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(rawArgs, runArgs);
    if (process.getuid?.() !== 0) throw new UsageError("must run as root (loading BPF and reading conntrack need CAP_BPF, CAP_NET_ADMIN)");
    const { ifNameToIndex } = await import("../ffi/libc.ts");
    const opts = parseRunArgs(args, ifNameToIndex);
    if (opts.dryRun) {
      const { dryRun } = await import("./dryrun.ts");
      process.stdout.write(`${dryRun(opts).join("\n")}\n`);
      return;
    }
    const log = new Logger(opts.logLevel);
    const { Daemon } = await import("./daemon.ts");
    const daemon = await Daemon.start(opts, log);
    const stop = (sig: string) => {
      log.info(`${sig}: stopping`);
      daemon.stop();
      process.exit(0);
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGUSR1", () => {
      const lines = daemon.describe();
      log.info(`${lines.length} connection(s) offloaded`);
      for (const l of lines) log.info(`  ${l}`);
    });
    // Only now: whoever waits for this line may signal the daemon at once.
    log.info(`ebpf-offloader ${pkg.version} running on ${daemon.deviceNames().join(", ")}`);
  },
});

const check = defineCommand({
  meta: { name: "check", description: "List what this system offers the offloader and what it lacks (exit 1 on any fail)" },
  args: checkArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(rawArgs, checkArgs);
    const results = await runChecks({ interfaces: args._.map(String), tryAttach: args["try-attach"] });
    process.stdout.write(args.json ? formatJson(results) : formatText(results));
    process.exitCode = results.some((r) => r.status === "fail") ? 1 : 0;
  },
});

const status = defineCommand({
  meta: { name: "status", description: "What a running daemon is doing: attachments, connections, counters, recent errors" },
  args: statusArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(rawArgs, statusArgs);
    const { statusCommand } = await import("./inspect.ts");
    process.stdout.write(statusCommand(args));
  },
});

const flows = defineCommand({
  meta: { name: "flows", description: "The offloaded connections, one per line, like conntrack -L" },
  args: flowsArgs,
  async run({ args, rawArgs }) {
    rejectUnknownFlags(rawArgs, flowsArgs);
    const { flowsCommand } = await import("./inspect.ts");
    process.stdout.write(flowsCommand(args));
  },
});

const commands: Record<string, CommandDef> = {
  run: run as CommandDef, check: check as CommandDef, status: status as CommandDef, flows: flows as CommandDef,
};

const main = defineCommand({
  meta: { name: "ebpf-offloader", version: pkg.version, description: "XDP/TC fast path for connections netfilter has accepted" },
  subCommands: { run, check, status, flows },
});

const argv = process.argv.slice(2);
try {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
    await showUsage(main);
  } else if (argv[0] === "--version" || argv[0] === "-v") {
    console.log(pkg.version);
  } else if (argv.includes("--help") || argv.includes("-h")) {
    const cmd = commands[argv[0] ?? ""];
    if (!cmd) throw new UsageError(`unknown command: ${argv[0]}`);
    await showUsage(cmd, main);
  } else {
    if (!commands[argv[0] ?? ""]) throw new UsageError(`unknown command: ${argv[0]} (try --help)`);
    await runCommand(main, { rawArgs: argv });
  }
} catch (e) {
  // One line, no stack: the message says what is wrong and what to do.
  const msg = (e as Error).message.replace(/\x1b\[[0-9;]*m/g, "");
  console.error(`ebpf-offloader: ${msg}`);
  process.exit(e instanceof UsageError ? 2 : 1);
}
