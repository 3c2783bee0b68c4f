// `npm run fuzz [-- OPTIONS]`: the fuzzer for as long as you like, with progress.
//   --frames N   stop after N frames (1e6, 5M and 500k work); default 2M
//   --time T     stop after T (90s, 10m, 2h) if that comes first
//   --seed S     the run's seed (default: random, printed)
//   --case C     rerun only case C of that seed (what a failure report names)
import { FuzzFailure, runFuzz, summary } from "./fuzz-harness.ts";
import { randomSeed } from "./fuzz-rng.ts";

function count(text: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e\d+)?)([kKmM]?)$/.exec(text);
  if (!m) throw new RangeError(`not a count: ${text}`);
  const mult = { "": 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6 }[m[2]!]!;
  return Math.round(Number(m[1]) * mult);
}

function duration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text);
  if (!m) throw new RangeError(`not a duration: ${text}`);
  const mult = { ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[m[2] ?? "s"]!;
  return Number(m[1]) * mult;
}

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined) throw new RangeError(`${name} needs a value`);
  return v;
};

const seedText = opt("--seed");
const seed = seedText === undefined ? randomSeed() : count(seedText);
const caseText = opt("--case");
const frames = count(opt("--frames") ?? "2M");
const timeText = opt("--time");
console.log(`fuzz: seed ${seed}${caseText ? `, case ${caseText}` : `, up to ${frames} frames${timeText ? ` or ${timeText}` : ""}`}`);
try {
  const s = await runFuzz({
    seed,
    frames,
    ms: timeText === undefined ? undefined : duration(timeText),
    onlyCase: caseText === undefined ? undefined : count(caseText),
    progress: (p) => console.log(`  ${summary(p)}`),
  });
  console.log(`done: ${summary(s)}`);
  // Which of the model's reasons to leave a frame to the stack the run reached, and how often.
  console.log("frames passed to the stack, by the model's reason:");
  for (const [why, n] of Object.entries(s.passReasons).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(9)}  ${why}`);
} catch (e) {
  if (!(e instanceof FuzzFailure)) throw e;
  console.error(e.message);
  process.exit(1);
}
