// Prints "N passed, N failed" over bun's JUnit reports (one per suite: the host's, the VM's) and
// exits non-zero when anything failed. Arguments: pairs of report file and that run's exit status.
// A skipped or todo test counts as failed, and so does a non-zero exit that the report does not
// explain (a test file that fails to load is missing from the XML; a VM that never booted left no
// report at all).
const args = Bun.argv.slice(2);
if (args.length === 0 || args.length % 2 !== 0) throw new Error("usage: junit-summary.ts FILE RC [FILE RC]...");

let passed = 0;
let failed = 0;
for (let i = 0; i < args.length; i += 2) {
  const file = args[i]!;
  const rc = Number(args[i + 1]);
  const xml = (await Bun.file(file).exists()) ? await Bun.file(file).text() : "";
  let failedHere = 0;
  for (const m of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = m[2] ?? "";
    if (/<(failure|error|skipped)\b/.test(body)) failedHere++;
    else passed++;
  }
  if (rc !== 0 && failedHere === 0) {
    console.error(`${file}: exit status ${rc} and no failed test in the report: counted as 1 failed`);
    failedHere = 1;
  }
  failed += failedHere;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
