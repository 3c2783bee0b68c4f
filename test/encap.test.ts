import { expect, test } from "bun:test";
import { describeEncap, encapActionFields, encapKeyFields, keyEncap, sameEncap } from "../src/encap.ts";
import { noEncap } from "../src/topology.ts";

const qinq = { vlans: [{ id: 100, proto: 0x88a8 }, { id: 7, proto: 0x8100 }], pppoeSid: 0x1234, dsaPort: 3 };

test("plain Ethernet is all zero, as the datapath keys untagged frames", () => {
  expect(encapKeyFields(noEncap())).toEqual({ vlan: [0, 0], pppoeSid: 0, dsaPort: 0 });
  expect(encapActionFields(noEncap(), 5)).toEqual({ egressVlan: [0, 0], egressPppoeSid: 0, egressDsaTagger: 0, egressDsaPort: 0 });
  expect(describeEncap(noEncap())).toBe("");
});

test("tags, sessions and ports round-trip through the key fields", () => {
  const fields = encapKeyFields(qinq);
  expect(fields).toEqual({ vlan: [100 | 0x8000, 7], pppoeSid: 0x1234, dsaPort: 4 });
  expect(keyEncap(fields)).toEqual(qinq);
  expect(sameEncap(keyEncap(fields), qinq)).toBe(true);
  expect(sameEncap(qinq, noEncap())).toBe(false);
});

test("the action names the conduit's tagger and the plain port index", () => {
  expect(encapActionFields(qinq, 1)).toEqual({ egressVlan: [100 | 0x8000, 7], egressPppoeSid: 0x1234, egressDsaTagger: 1, egressDsaPort: 3 });
  expect(describeEncap(qinq)).toBe(" [dsa port 3, s-vlan 100, vlan 7, pppoe 0x1234]");
});
