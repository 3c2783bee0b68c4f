// Builds the BPF object(s) and the single-binary daemon.
//   bun build.ts                 BPF objects + dist/ebpf-offloader for this machine
//   bun build.ts --bpf-only      only the BPF objects (build/*.o)
//   bun build.ts --target all    also linux x64/arm64, glibc/musl binaries in dist/, and
//                                dist/SHA256SUMS of those (sha256sum -c format)
//   --outdir DIR                 binaries into DIR instead of dist/
import { $ } from "bun";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Bun.argv.slice(2),
  options: { "bpf-only": { type: "boolean" }, target: { type: "string" }, outdir: { type: "string" } },
});

const root = import.meta.dir;
mkdirSync(`${root}/build`, { recursive: true });

// -target bpf with host byte order; the asm/ headers come from the multiarch include directory.
const multiarch = (await $`gcc -print-multiarch`.quiet().nothrow().text()).trim();
for (const src of readdirSync(`${root}/bpf`).filter((f) => f.endsWith(".bpf.c"))) {
  const out = `${root}/build/${src.replace(/\.c$/, ".o")}`;
  await $`clang -O2 -g -Wall -Werror -target bpf -mcpu=v3 -I${root}/bpf -I/usr/include/${multiarch} -c ${root}/bpf/${src} -o ${out}`;
}
if (values["bpf-only"]) process.exit(0);

const targets: Record<string, string> = {
  "linux-x64": "bun-linux-x64",
  "linux-arm64": "bun-linux-arm64",
  "linux-x64-musl": "bun-linux-x64-musl",
  "linux-arm64-musl": "bun-linux-arm64-musl",
};
const compile = async (target: string | undefined, outfile: string) => {
  const t = target ? [`--target=${target}`] : [];
  await $`bun build ${root}/src/main.ts --compile ${t} --minify --bytecode --format=esm --no-compile-autoload-dotenv --no-compile-autoload-bunfig --outfile ${outfile}`.quiet();
  console.error(`built ${outfile}`);
};
const dist = values.outdir ? resolve(values.outdir) : `${root}/dist`;
mkdirSync(dist, { recursive: true });
await compile(undefined, `${dist}/ebpf-offloader`);
if (values.target === "all") {
  const sums: string[] = [];
  for (const [name, target] of Object.entries(targets)) {
    const out = `${dist}/ebpf-offloader-${name}`;
    await compile(target, out);
    const hash = new Bun.CryptoHasher("sha256").update(await Bun.file(out).arrayBuffer()).digest("hex");
    sums.push(`${hash}  ${basename(out)}\n`);
  }
  writeFileSync(`${dist}/SHA256SUMS`, sums.join(""));
  console.error(`wrote ${dist}/SHA256SUMS`);
} else if (values.target) {
  console.error(`build.ts: unknown --target ${values.target} (only "all")`);
  process.exit(2);
}
