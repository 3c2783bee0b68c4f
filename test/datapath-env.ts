// What the datapath tests share: the object they load and the devices and hosts of their frames.
export const OBJECT_PATH = `${import.meta.dir}/../build/offload.bpf.o`;
/** The loopback device: a test run needs a real device to name as the ingress. */
export const INGRESS_IFINDEX = 1;
/** Never used to transmit: a test run returns the redirect verdict without sending. */
export const OUT_IFINDEX = 42;
export const ROUTER_MAC = "02:00:00:00:00:01";
export const CLIENT_MAC = "02:00:00:00:00:02";
export const NEXT_HOP_MAC = "02:00:00:00:00:03";
export const EGRESS_MAC = "02:00:00:00:00:04";
/** Another host on the ingress segment (a second gateway on the LAN, another PPPoE peer). */
export const OTHER_MAC = "02:00:00:00:00:99";
export const MAX_CONNS = 1024;
