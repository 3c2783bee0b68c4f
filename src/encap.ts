// Conversions between the resolver's encapsulation (src/topology.ts) and the flow map's fields
// (bpf/flow_abi.h): VLAN tags as VID | FLOW_VLAN_8021AD, PPPoE session ids, DSA ports.
import { FLOW_VLAN_8021AD, FLOW_VLAN_VID_MASK, type FlowKey } from "./abi.ts";
import type { VlanTag } from "./netlink.ts";
import type { Encap } from "./topology.ts";

const ETH_P_8021AD = 0x88a8;
const ETH_P_8021Q = 0x8100;

function tagField(t: VlanTag | undefined): number {
  return t ? (t.id & FLOW_VLAN_VID_MASK) | (t.proto === ETH_P_8021AD ? FLOW_VLAN_8021AD : 0) : 0;
}

function fieldTag(v: number): VlanTag {
  return { id: v & FLOW_VLAN_VID_MASK, proto: v & FLOW_VLAN_8021AD ? ETH_P_8021AD : ETH_P_8021Q };
}

/** Plain Ethernet, shared by every flow that has no encapsulation (never modified). */
const PLAIN: Encap = Object.freeze({ vlans: Object.freeze([]) as unknown as VlanTag[], pppoeSid: null, dsaPort: null });

/** The encapsulation a flow key says its packets arrive with. */
export function keyEncap(k: Pick<FlowKey, "vlan" | "pppoeSid" | "dsaPort">): Encap {
  if (k.vlan[0] === 0 && k.vlan[1] === 0 && k.pppoeSid === 0 && k.dsaPort === 0) return PLAIN;
  return {
    vlans: k.vlan.filter((v) => v !== 0).map(fieldTag),
    pppoeSid: k.pppoeSid || null,
    dsaPort: k.dsaPort ? k.dsaPort - 1 : null,
  };
}

/** The flow key fields for packets that arrive with `e`. */
export function encapKeyFields(e: Encap): Pick<FlowKey, "vlan" | "pppoeSid" | "dsaPort"> {
  return { vlan: [tagField(e.vlans[0]), tagField(e.vlans[1])], pppoeSid: e.pppoeSid ?? 0, dsaPort: e.dsaPort === null ? 0 : e.dsaPort + 1 };
}

/** The flow action fields that send packets out with `e` (DSA: the conduit's tagger). */
export function encapActionFields(e: Encap, dsaTagger: number) {
  return {
    egressVlan: [tagField(e.vlans[0]), tagField(e.vlans[1])] as const,
    egressPppoeSid: e.pppoeSid ?? 0,
    egressDsaTagger: e.dsaPort === null ? 0 : dsaTagger,
    egressDsaPort: e.dsaPort ?? 0,
  };
}

export function sameEncap(a: Encap, b: Encap): boolean {
  return a.pppoeSid === b.pppoeSid && a.dsaPort === b.dsaPort && a.vlans.length === b.vlans.length &&
    a.vlans.every((t, i) => tagField(t) === tagField(b.vlans[i]));
}

/** "vlan 7", "pppoe 0x1234 in vlan 7", "" for plain Ethernet: for logs. */
export function describeEncap(e: Encap): string {
  const parts = [
    e.dsaPort !== null ? `dsa port ${e.dsaPort}` : "",
    ...e.vlans.map((t) => `${t.proto === ETH_P_8021AD ? "s-vlan" : "vlan"} ${t.id}`),
    e.pppoeSid !== null ? `pppoe 0x${e.pppoeSid.toString(16)}` : "",
  ].filter(Boolean);
  return parts.length ? ` [${parts.join(", ")}]` : "";
}
