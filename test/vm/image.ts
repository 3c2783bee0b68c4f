// The VM's boot files: Debian bookworm's kernel (linux-image-amd64, fetched with apt-get download)
// and a small initramfs (busybox-static, test/vm/init, the kernel modules the lab needs with their
// dependencies from modules.dep). Everything is cached under build/vm and rebuilt only when the
// kernel package, the init script or the module list change.
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export const CACHE = `${import.meta.dir}/../../build/vm`;
const INIT = `${import.meta.dir}/init`;

/** Host packages: the emulator, the initramfs's busybox, and the PPPoE tools the VM runs from the host's root. */
const HOST_DEBS = ["qemu-system-x86", "busybox-static", "ppp", "pppoe"];

/**
 * Modules loaded at boot (with their dependencies), and module directories copied whole so that
 * the kernel can load the rest on demand (nft expressions, conntrack helpers, qdiscs) through the
 * initramfs's busybox modprobe.
 */
const BOOT_MODULES = [
  // libcrc32c (conntrack, nf_tables) asks the crypto API for crc32c, which it cannot autoload this early.
  "crc32c_generic",
  "virtio_pci", "9pnet_virtio", "9p", "overlay", "veth", "bridge", "8021q", "pppoe", "pppox", "ppp_generic",
  "nf_conntrack", "nf_conntrack_netlink", "nf_tables", "nf_nat", "nft_chain_nat", "nft_masq", "nft_ct",
  "nf_flow_table", "nf_flow_table_inet", "nft_flow_offload", "sch_ingress", "cls_bpf",
];
const ON_DEMAND_DIRS = [
  "kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter", "kernel/net/bridge",
  "kernel/net/8021q", "kernel/net/sched", "kernel/drivers/net/ppp",
];

export interface BootFiles {
  kernel: string;
  initrd: string;
  /** Kernel release, e.g. 6.1.0-56-amd64. */
  release: string;
}

function run(cmd: string[], opts: { cwd?: string; stdout?: string } = {}): string {
  const r = Bun.spawnSync(cmd, { cwd: opts.cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

function log(msg: string): void {
  process.stderr.write(`vm: ${msg}\n`);
}

/** Installs the host packages that are missing (idempotent; apt-get update only when needed). */
export function ensureHostPackages(): void {
  const missing = HOST_DEBS.filter((p) => {
    const r = Bun.spawnSync(["dpkg-query", "-W", "-f=${Status}", p], { stdout: "pipe", stderr: "ignore" });
    return !r.stdout.toString().includes("install ok installed");
  });
  if (missing.length === 0) return;
  log(`installing ${missing.join(" ")}`);
  run(["apt-get", "update", "-qq"]);
  const r = Bun.spawnSync(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing], {
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, stdout: "pipe", stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`apt-get install ${missing.join(" ")}: ${r.stderr.toString()}`);
}

/** The versioned kernel package linux-image-amd64 points at (the metapackage has no files). */
function kernelPackage(): string {
  const deps = run(["apt-cache", "depends", "linux-image-amd64"]);
  const m = /Depends: (linux-image-[0-9][^\s]*-amd64)\b/.exec(deps);
  if (!m) throw new Error(`linux-image-amd64 depends on no kernel image:\n${deps}`);
  return m[1]!;
}

/** Downloads (once) and unpacks the kernel package; returns the unpacked tree and the release. */
function fetchKernel(): { root: string; release: string } {
  mkdirSync(CACHE, { recursive: true });
  let pkg: string;
  try {
    pkg = kernelPackage();
  } catch {
    // Offline, or the apt lists are not fetched yet (a clean machine): the cached kernel, if any,
    // else the lists, once.
    const cached = readdirSync(CACHE).find((f) => /^kernel-.*-amd64$/.test(f));
    if (cached) pkg = `linux-image-${cached.slice("kernel-".length)}`;
    else {
      log("apt-get update");
      run(["apt-get", "update", "-qq"]);
      pkg = kernelPackage();
    }
  }
  const release = pkg.slice("linux-image-".length);
  const root = `${CACHE}/kernel-${release}`;
  if (existsSync(`${root}/lib/modules/${release}/modules.dep`)) return { root, release };
  let deb = readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
  if (!deb) {
    log(`apt-get download ${pkg}`);
    run(["apt-get", "download", pkg], { cwd: CACHE });
    deb = readdirSync(CACHE).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${CACHE}`);
  }
  const tmp = `${root}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  run(["dpkg-deb", "-x", `${CACHE}/${deb}`, tmp]);
  // The package's postinst runs depmod; busybox's depmod writes modules.dep and modules.alias.
  run(["busybox", "depmod", "-b", tmp, release]);
  rmSync(root, { recursive: true, force: true });
  renameSync(tmp, root);
  return { root, release };
}

/** Relative module paths (kernel/...ko) for BOOT_MODULES and ON_DEMAND_DIRS, closed under modules.dep. */
function moduleClosure(modDir: string): { all: Set<string>; dep: Map<string, string[]> } {
  const dep = new Map<string, string[]>();
  for (const line of readFileSync(`${modDir}/modules.dep`, "utf8").split("\n")) {
    const [mod, deps] = line.split(":");
    if (mod && deps !== undefined) dep.set(mod, deps.trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map([...dep.keys()].map((p) => [p.split("/").pop()!.replace(/\.ko(\.\w+)?$/, "").replace(/-/g, "_"), p]));
  const todo: string[] = [];
  for (const name of BOOT_MODULES) {
    const p = byName.get(name);
    if (!p) throw new Error(`module ${name} not in ${modDir}/modules.dep (built in?)`);
    todo.push(p);
  }
  for (const p of dep.keys()) if (ON_DEMAND_DIRS.some((d) => p.startsWith(`${d}/`))) todo.push(p);
  const all = new Set<string>();
  while (todo.length) {
    const p = todo.pop()!;
    if (all.has(p)) continue;
    all.add(p);
    todo.push(...(dep.get(p) ?? []));
  }
  return { all, dep };
}

/** Builds (or reuses) the kernel and initramfs; installs missing host packages first. */
export function prepareBootFiles(): BootFiles {
  ensureHostPackages();
  const { root, release } = fetchKernel();
  const kernel = `${root}/boot/vmlinuz-${release}`;
  const modDir = `${root}/lib/modules/${release}`;
  const busybox = readFileSync("/bin/busybox");
  const init = readFileSync(INIT);
  const key = createHash("sha256").update(release).update(init).update(busybox)
    .update(JSON.stringify([BOOT_MODULES, ON_DEMAND_DIRS])).digest("hex").slice(0, 12);
  const initrd = `${CACHE}/initramfs-${release}-${key}.cpio`;
  if (existsSync(initrd)) return { kernel, initrd, release };

  log(`building ${initrd}`);
  const stage = `${CACHE}/initramfs.stage`;
  rmSync(stage, { recursive: true, force: true });
  try {
    for (const d of ["bin", "sbin", "dev", "proc", "sys", "host", "newroot", "ovl", `lib/modules/${release}`]) {
      mkdirSync(`${stage}/${d}`, { recursive: true });
    }
    writeFileSync(`${stage}/bin/busybox`, busybox, { mode: 0o755 });
    writeFileSync(`${stage}/init`, init, { mode: 0o755 });
    const { all, dep } = moduleClosure(modDir);
    for (const p of all) {
      mkdirSync(dirname(`${stage}/lib/modules/${release}/${p}`), { recursive: true });
      cpSync(`${modDir}/${p}`, `${stage}/lib/modules/${release}/${p}`);
    }
    // modules.dep and modules.alias cut down to what is there, so that modprobe fails cleanly on the rest.
    const depText = [...all].map((p) => `${p}: ${(dep.get(p) ?? []).join(" ")}`.trimEnd()).join("\n");
    writeFileSync(`${stage}/lib/modules/${release}/modules.dep`, `${depText}\n`);
    const names = new Set([...all].map((p) => p.split("/").pop()!.replace(/\.ko$/, "").replace(/-/g, "_")));
    const alias = readFileSync(`${modDir}/modules.alias`, "utf8").split("\n")
      .filter((l) => names.has((l.split(" ")[2] ?? "").replace(/-/g, "_")));
    writeFileSync(`${stage}/lib/modules/${release}/modules.alias`, `${alias.join("\n")}\n`);
    writeFileSync(`${stage}/boot-modules`, `${BOOT_MODULES.join("\n")}\n`);
    const tmp = `${initrd}.tmp`;
    const cpio = Bun.spawnSync(["sh", "-c", `find . | busybox cpio -o -H newc > '${tmp}'`], { cwd: stage, stderr: "pipe" });
    if (cpio.exitCode !== 0) throw new Error(`cpio: ${cpio.stderr.toString()}`);
    // Older initramfs images of this kernel are stale now.
    for (const f of readdirSync(CACHE)) if (f.startsWith(`initramfs-${release}-`) && f.endsWith(".cpio")) rmSync(`${CACHE}/${f}`);
    renameSync(tmp, initrd);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return { kernel, initrd, release };
}
