// Prints "N passed, N failed" from bun's JUnit report and exits non-zero when anything failed.
// A skipped or todo test counts as failed, and so does a non-zero exit of `bun test` that the
// report does not explain (a test file that fails to load is missing from the XML).
const [file, rcArg] = Bun.argv.slice(2);
if (!file) throw new Error("usage: junit-summary.ts FILE RC");
const rc = Number(rcArg ?? "0");
const xml = (await Bun.file(file).exists()) ? await Bun.file(file).text() : "";

let passed = 0;
let failed = 0;
for (const m of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
  const body = m[2] ?? "";
  if (/<(failure|error|skipped)\b/.test(body)) failed++;
  else passed++;
}
if (rc !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || rc !== 0 ? 1 : 0);
