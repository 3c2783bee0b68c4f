import { expect, test } from "bun:test";
import { SlotAllocator } from "../src/slots.ts";

test("hands out every slot once, then none", () => {
  const a = new SlotAllocator(3, 100, () => 0);
  expect([a.alloc(), a.alloc(), a.alloc(), a.alloc()]).toEqual([0, 1, 2, null]);
  expect(a.inUse).toBe(3);
});

test("a released slot rests before reuse", () => {
  let now = 0;
  const a = new SlotAllocator(1, 100, () => now);
  expect(a.alloc()).toBe(0);
  a.release(0);
  expect(a.alloc()).toBeNull();
  now = 99;
  expect(a.alloc()).toBeNull();
  now = 100;
  expect(a.alloc()).toBe(0);
});
