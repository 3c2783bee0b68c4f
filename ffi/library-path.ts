// Finds a shared library by absolute path: dlopen of a bare soname may pick up a file from the
// working directory, and Debian (multiarch), OpenWrt and musl distributions keep libraries in
// different directories.
import { existsSync } from "node:fs";

export class LibraryNotFoundError extends Error {
  constructor(readonly sonames: readonly string[], readonly searched: readonly string[]) {
    super(`shared library ${sonames.join(" / ")} not found (searched ${searched.join(", ")}): install it`);
  }
}

const MULTIARCH: Record<string, readonly string[]> = {
  x64: ["x86_64-linux-gnu", "x86_64-linux-musl"],
  arm64: ["aarch64-linux-gnu", "aarch64-linux-musl"],
  arm: ["arm-linux-gnueabihf", "arm-linux-musleabihf"],
};

function searchDirs(): string[] {
  const dirs: string[] = [];
  for (const triple of MULTIARCH[process.arch] ?? []) dirs.push(`/usr/lib/${triple}`, `/lib/${triple}`);
  dirs.push("/usr/lib64", "/lib64", "/usr/lib", "/lib", "/usr/local/lib");
  return dirs;
}

/** The absolute path of the first of `sonames` found in the system library directories. */
export function findLibrary(sonames: readonly string[]): string {
  const dirs = searchDirs();
  for (const name of sonames) {
    for (const dir of dirs) {
      const path = `${dir}/${name}`;
      if (existsSync(path)) return path;
    }
  }
  throw new LibraryNotFoundError(sonames, dirs);
}
