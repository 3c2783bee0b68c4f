// docs/bench.svg: horizontal bars of the median forwarded rate per configuration, one group per
// flow count, labelled with the ratios to the kernel path and to the static-redirect ceiling.
// Drawn from bench/results.json only.

export interface Bar {
  label: string;
  value: number;
  note: string;
  highlight: boolean;
}

export interface BarGroup {
  title: string;
  bars: Bar[];
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function barChart(title: string, unit: string, groups: BarGroup[]): string {
  const W = 760;
  const LABEL_W = 110;
  const NOTE_W = 300; // room for the longest label after the longest bar
  const BAR_MAX = W - LABEL_W - NOTE_W - 20;
  const ROW = 24;
  const max = Math.max(...groups.flatMap((g) => g.bars.map((b) => b.value)), 1);
  const parts: string[] = [];
  let y = 62;
  for (const g of groups) {
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(g.title)}</text>`);
    y += 10;
    for (const b of g.bars) {
      const w = Math.max(1, Math.round((b.value / max) * BAR_MAX));
      const fill = b.highlight ? "#2b7bb9" : "#9bb7cf";
      parts.push(
        `<text x="${LABEL_W - 6}" y="${y + 15}" text-anchor="end">${esc(b.label)}</text>`,
        `<rect x="${LABEL_W}" y="${y + 3}" width="${w}" height="${ROW - 8}" fill="${fill}"/>`,
        `<text x="${LABEL_W + w + 6}" y="${y + 15}">${esc(b.note)}</text>`,
      );
      y += ROW;
    }
    y += 18;
  }
  const H = y + 10;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="13">
<rect width="${W}" height="${H}" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">${esc(title)}</text>
<text x="10" y="38" fill="#555">${esc(unit)}</text>
${parts.join("\n")}
</svg>
`;
}
