// The fuzzer in CI: at least 50,000 hostile frames (mutants of valid frames of every
// encapsulation, and made-up ones) through both programs on the real kernel, each held against
// the reference model. The seed is random unless FUZZ_SEED is set, and is in the test's name and
// in every failure; FUZZ_CASE reruns just the failing case, FUZZ_FRAMES changes the count.
import { expect, test } from "bun:test";
import { runFuzz, summary } from "./fuzz-harness.ts";
import { randomSeed } from "./fuzz-rng.ts";

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${name}=${v} is not a non-negative integer`);
  return n;
}

const seed = envInt("FUZZ_SEED") ?? randomSeed();
const frames = envInt("FUZZ_FRAMES") ?? 100_000;
const onlyCase = envInt("FUZZ_CASE");

test(`fuzz: ${onlyCase === undefined ? `${frames} frames` : `case ${onlyCase}`} through XDP and TC match the model (seed ${seed})`, async () => {
  // A failure throws a FuzzFailure whose message has the frame, the flows, both results and
  // the command that reruns just that case.
  const s = await runFuzz({ seed, frames, onlyCase });
  console.log(`fuzz ${summary(s)}`);
  expect(s.frames).toBeGreaterThanOrEqual(onlyCase === undefined ? frames : 1);
}, 300_000);
