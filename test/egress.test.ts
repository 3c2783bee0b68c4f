import { expect, test } from "bun:test";
import { tcOnlyReason } from "../src/egress.ts";

const ndoXmit = 1 | 2 | 4;

test("default queueing disciplines don't keep flows off XDP", () => {
  for (const q of ["noqueue", "mq", "fq_codel", "pfifo_fast"]) {
    expect(tcOnlyReason({ hook: "xdp-native", rootQdisc: q, xdpFeatures: ndoXmit }, true)).toBeNull();
  }
});

test("an admin's shaper sends the device's flows through TC, whatever the XDP mode", () => {
  for (const hook of ["xdp-native", "xdp-generic"] as const) {
    expect(tcOnlyReason({ hook, rootQdisc: "cake", xdpFeatures: ndoXmit }, true)).toMatch(/cake shapes traffic/);
  }
  expect(tcOnlyReason({ hook: "tc", rootQdisc: "htb", xdpFeatures: ndoXmit }, true)).toBeNull();
});

test("native XDP can't redirect into a driver without ndo_xdp_xmit; generic XDP can", () => {
  expect(tcOnlyReason({ hook: "xdp-native", rootQdisc: null, xdpFeatures: 1 | 2 }, true)).toMatch(/no ndo_xdp_xmit/);
  expect(tcOnlyReason({ hook: "xdp-generic", rootQdisc: null, xdpFeatures: 1 | 2 }, false)).toBeNull();
  // A kernel that can't tell (before 6.3): a failed redirect would drop the frame, so TC.
  expect(tcOnlyReason({ hook: "xdp-native", rootQdisc: null, xdpFeatures: null }, true)).toMatch(/before 6\.3/);
});
