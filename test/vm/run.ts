// npm run test:vm: boots Debian's 6.1 kernel under qemu and runs the VM test suite in it (or the
// shell command given after "--"), as root in the repository, with the host's binaries.
//
//   bun test/vm/run.ts                      # the suite: test/vm/*.vm.ts
//   bun test/vm/run.ts --junit FILE         # the suite, and its JUnit report (bun test's) in FILE
//   bun test/vm/run.ts --no-build           # the suite with the binary already in dist/
//   bun test/vm/run.ts -- uname -a          # any command; its exit status is ours
//   bun test/vm/run.ts --timeout 600 -- ...
import { readdirSync, writeFileSync } from "node:fs";
import { type BootFiles, prepareBootFiles } from "./image.ts";
import { runInVm, type VmResult } from "./qemu.ts";

const ROOT = `${import.meta.dir}/../..`;

function usage(): never {
  console.error("usage: bun test/vm/run.ts [--timeout SECONDS] [--mem MIB] [--junit FILE] [--no-build] [-- COMMAND...]");
  process.exit(2);
}

const argv = process.argv.slice(2);
let timeoutS = 1800;
let memMiB = 4096;
let junit: string | null = null;
let build = true;
let command: string | null = null;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i]!;
  if (a === "--timeout") timeoutS = Number(argv[++i] ?? usage());
  else if (a === "--mem") memMiB = Number(argv[++i] ?? usage());
  else if (a === "--junit") junit = argv[++i] ?? usage();
  else if (a === "--no-build") build = false;
  else if (a === "--" || !a.startsWith("-")) {
    // (bun itself may swallow a "--" right after the script name.)
    command = argv.slice(a === "--" ? i + 1 : i).join(" ");
    break;
  } else usage();
}
if (junit !== null && command !== null) usage();

if (process.getuid?.() !== 0) {
  console.error("test:vm: needs root (apt-get, and the VM's tests build namespaces as root)");
  process.exit(1);
}

if (command === null) {
  // The suite needs the binary the host builds; the VM only runs it.
  if (build) {
    const b = Bun.spawnSync([process.execPath, "build.ts"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if (b.exitCode !== 0) process.exit(1);
  }
  const files = readdirSync(`${ROOT}/test/vm`).filter((f) => f.endsWith(".vm.ts")).sort().map((f) => `./test/vm/${f}`);
  // The report goes to the run directory the host reads back ($EO_VM_OUT).
  const report = junit === null ? "" : ' --reporter=junit --reporter-outfile="$EO_VM_OUT/junit.xml"';
  command = `node_modules/.bin/bun test --timeout 600000${report} ${files.join(" ")}`;
}

// EO_BIN (another daemon binary, e.g. one built with a candidate fix) reaches the tests in the VM.
if (process.env.EO_BIN) command = `export EO_BIN='${process.env.EO_BIN}'\n${command}`;
let boot: BootFiles;
let res: VmResult;
try {
  boot = prepareBootFiles();
  res = await runInVm(boot, command, { timeoutS, memMiB, cwd: ROOT });
} catch (e) {
  console.error(`test:vm: cannot run the VM: ${(e as Error).message.trim()}`);
  process.exit(1);
}
const booted = Number.isNaN(res.bootS) ? "never reached the init" : `booted in ${res.bootS.toFixed(1)} s`;
console.log(`\nvm: kernel ${boot.release}, ${booted}, ran ${res.totalS.toFixed(1)} s in all, exit ${res.status}`);
if (junit !== null && res.files["junit.xml"] !== undefined) writeFileSync(junit, res.files["junit.xml"]);
process.exit(res.status);
