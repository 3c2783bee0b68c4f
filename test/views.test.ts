// `flows` filters without root: which rows each --state keeps.
import { describe, expect, test } from "bun:test";
import { FLOW_ACT_DROP, LAYOUT, decodeAction, decodeKey } from "../src/abi.ts";
import { FLOW_STATES, type FlowRow, filterFlows, isFlowState } from "../src/views.ts";

const key = decodeKey(new Uint8Array(LAYOUT.flow_key.size));
const action = decodeAction(new Uint8Array(LAYOUT.flow_action.size));
const row = (connId: number, flags: number, closing: boolean): FlowRow => ({
  connId, proto: "udp", family: 2, idleS: 0, closing,
  dirs: [{ key: { ...key, ifindex: 1 }, action: { ...action, flags, outIfindex: 2 }, packets: 0n, bytes: 0n }],
});
const rows = [row(1, 0, false), row(2, 0, true), row(3, FLOW_ACT_DROP, false)];
const ids = (state?: (typeof FLOW_STATES)[number]) => filterFlows(rows, { state }, String).map((r) => r.connId);

describe("flows --state", () => {
  test("offloaded, closing and dropped each keep their own rows; no state keeps all", () => {
    expect(ids("offloaded")).toEqual([1]);
    expect(ids("closing")).toEqual([2]);
    expect(ids("dropped")).toEqual([3]);
    expect(ids()).toEqual([1, 2, 3]);
  });

  test("only the three names are states", () => {
    expect(FLOW_STATES.filter(isFlowState)).toEqual(["offloaded", "closing", "dropped"]);
    expect(isFlowState("drop")).toBe(false);
  });
});
