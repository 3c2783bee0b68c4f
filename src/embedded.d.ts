// The BPF object is embedded into the compiled binary as a file asset (see src/daemon.ts).
declare module "*.bpf.o" {
  const path: string;
  export default path;
}
