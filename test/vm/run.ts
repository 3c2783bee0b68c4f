// npm run test:vm: boots Debian's 6.1 kernel under qemu and runs the VM test suite in it (or the
// shell command given after "--"), as root in the repository, with the host's binaries.
//
//   bun test/vm/run.ts                      # the suite: test/vm/*.vm.ts
//   bun test/vm/run.ts -- uname -a          # any command; its exit status is ours
//   bun test/vm/run.ts --timeout 600 -- ...
import { readdirSync } from "node:fs";
import { prepareBootFiles } from "./image.ts";
import { runInVm } from "./qemu.ts";

const ROOT = `${import.meta.dir}/../..`;

function usage(): never {
  console.error("usage: bun test/vm/run.ts [--timeout SECONDS] [--mem MIB] [-- COMMAND...]");
  process.exit(2);
}

const argv = process.argv.slice(2);
let timeoutS = 1800;
let memMiB = 4096;
let command: string | null = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === "--timeout") timeoutS = Number(argv[++i] ?? usage());
  else if (a === "--mem") memMiB = Number(argv[++i] ?? usage());
  else if (a === "--" || !a.startsWith("-")) {
    // (bun itself may swallow a "--" right after the script name.)
    command = argv.slice(a === "--" ? i + 1 : i).join(" ");
    break;
  } else usage();
}

if (process.getuid?.() !== 0) {
  console.error("test:vm: needs root (apt-get, and the VM's tests build namespaces as root)");
  process.exit(1);
}

if (command === null) {
  // The suite needs the binary the host builds; the VM only runs it.
  const b = Bun.spawnSync([process.execPath, "build.ts"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (b.exitCode !== 0) process.exit(1);
  const files = readdirSync(`${ROOT}/test/vm`).filter((f) => f.endsWith(".vm.ts")).sort().map((f) => `./test/vm/${f}`);
  command = `node_modules/.bin/bun test --timeout 600000 ${files.join(" ")}`;
}

// EO_BIN (another daemon binary, e.g. one built with a candidate fix) reaches the tests in the VM.
if (process.env.EO_BIN) command = `export EO_BIN='${process.env.EO_BIN}'\n${command}`;
const boot = prepareBootFiles();
const res = await runInVm(boot, command, { timeoutS, memMiB, cwd: ROOT });
const booted = Number.isNaN(res.bootS) ? "never reached the init" : `booted in ${res.bootS.toFixed(1)} s`;
console.log(`\nvm: kernel ${boot.release}, ${booted}, ran ${res.totalS.toFixed(1)} s in all, exit ${res.status}`);
process.exit(res.status);
