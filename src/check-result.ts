// One line of `ebpf-offloader check`, and the two ways of printing the list.

export type Status = "ok" | "warn" | "fail";

export interface CheckResult {
  status: Status;
  /** What was checked: "kernel", "libbpf", "interface eth0", ... */
  item: string;
  detail: string;
  /** How to fix it; present on every warn and fail. */
  hint?: string;
}

export const ok = (item: string, detail: string): CheckResult => ({ status: "ok", item, detail });
export const warn = (item: string, detail: string, hint: string): CheckResult => ({ status: "warn", item, detail, hint });
export const fail = (item: string, detail: string, hint: string): CheckResult => ({ status: "fail", item, detail, hint });

/** The message of anything thrown, on one line. */
export function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0]?.trim() ?? "";
}

/**
 *   ok    kernel: 6.1.0
 *   warn  interface eth1: no native XDP (generic only)
 *         hint: ...
 */
export function formatText(results: readonly CheckResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.status.padEnd(4)}  ${r.item}: ${r.detail}`);
    if (r.hint) lines.push(`      hint: ${r.hint}`);
  }
  const fails = results.filter((r) => r.status === "fail").length;
  const warns = results.filter((r) => r.status === "warn").length;
  lines.push(fails ? `${fails} failed, ${warns} warning(s): ebpf-offloader cannot run here until the failures are fixed` : `no failures, ${warns} warning(s)`);
  return `${lines.join("\n")}\n`;
}

export function formatJson(results: readonly CheckResult[]): string {
  return `${JSON.stringify({ ok: results.every((r) => r.status !== "fail"), checks: results }, null, 2)}\n`;
}
