import { expect, test } from "bun:test";
import { plannedHooks } from "../src/dryrun.ts";

const native = (m: Record<number, boolean | null>) => (i: number) => m[i] ?? null;

test("auto: native XDP only when every device has it, else tc everywhere", () => {
  expect([...plannedHooks("auto", [1, 2], native({ 1: true, 2: true })).values()].map((h) => h.hook)).toEqual(["xdp-native", "xdp-native"]);
  expect([...plannedHooks("auto", [1, 2], native({ 1: true, 2: false })).values()].map((h) => h.hook)).toEqual(["tc", "tc"]);
  expect([...plannedHooks("auto", [1], native({ 1: null })).values()].map((h) => h.hook)).toEqual(["tc"]);
});

test("xdp: native where the driver has it, generic where it has not", () => {
  expect([...plannedHooks("xdp", [1, 2], native({ 1: true, 2: false })).values()].map((h) => h.hook)).toEqual(["xdp-native", "xdp-generic"]);
});

test("an explicit hook is kept, with a warning when native XDP will fail", () => {
  expect(plannedHooks("xdp-native", [1], native({ 1: false })).get(1)?.why).toMatch(/attach will fail/);
  expect(plannedHooks("tc", [1], native({ 1: true })).get(1)).toEqual({ hook: "tc", why: "asked for" });
});
