// The BPF object is embedded into the compiled binary as a file asset (see src/daemon.ts).
declare module "*.bpf.o" {
  const path: string;
  export default path;
}

// C source embedded as text (ffi/wakeup-thread.c, compiled at run time by bun:ffi's cc).
declare module "*.c" {
  const source: string;
  export default source;
}
