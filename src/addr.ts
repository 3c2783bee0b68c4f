// Address formatting for logs and flow listings. Addresses are 16-byte arrays in network order,
// IPv4 in the first four bytes (see bpf/flow_abi.h).
import { AF_INET } from "./abi.ts";

export function formatAddr(family: number, a: Uint8Array): string {
  if (family === AF_INET) return `${a[0]}.${a[1]}.${a[2]}.${a[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((a[i]! << 8) | a[i + 1]!);
  // RFC 5952: the longest run (two or more) of zero words becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** "10.0.0.1:80" or "[fd00::1]:80". */
export function formatEndpoint(family: number, a: Uint8Array, port: number): string {
  const s = formatAddr(family, a);
  return family === AF_INET ? `${s}:${port}` : `[${s}]:${port}`;
}

export function protoName(proto: number): string {
  return proto === 6 ? "tcp" : proto === 17 ? "udp" : String(proto);
}
