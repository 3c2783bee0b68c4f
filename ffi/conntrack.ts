// Thin bindings to libnetfilter_conntrack (1.0.x): the symbols the daemon uses and the constants
// of <libnetfilter_conntrack/libnetfilter_conntrack.h> and the kernel headers it includes.
// Values are fixed by the library's ABI; the ones used are checked against the installed header.
import { dlopen } from "bun:ffi";
import { findLibrary } from "./library-path.ts";

export const nfct = dlopen(findLibrary(["libnetfilter_conntrack.so.3"]), {
  nfct_open: { args: ["u8", "u32"], returns: "ptr" },
  nfct_close: { args: ["ptr"], returns: "i32" },
  nfct_fd: { args: ["ptr"], returns: "i32" },
  nfct_new: { args: [], returns: "ptr" },
  nfct_destroy: { args: ["ptr"], returns: "void" },
  nfct_set_attr: { args: ["ptr", "i32", "ptr"], returns: "void" },
  nfct_set_attr_u8: { args: ["ptr", "i32", "u8"], returns: "void" },
  nfct_set_attr_u16: { args: ["ptr", "i32", "u16"], returns: "void" },
  nfct_set_attr_u32: { args: ["ptr", "i32", "u32"], returns: "void" },
  nfct_get_attr: { args: ["ptr", "i32"], returns: "ptr" },
  nfct_get_attr_u8: { args: ["ptr", "i32"], returns: "u8" },
  nfct_get_attr_u16: { args: ["ptr", "i32"], returns: "u16" },
  nfct_get_attr_u32: { args: ["ptr", "i32"], returns: "u32" },
  nfct_attr_is_set: { args: ["ptr", "i32"], returns: "i32" },
  nfct_query: { args: ["ptr", "i32", "ptr"], returns: "i32" },
  /** cb: int (*)(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *data) */
  nfct_callback_register: { args: ["ptr", "i32", "function", "ptr"], returns: "i32" },
  nfct_callback_unregister: { args: ["ptr"], returns: "void" },
  nfct_catch: { args: ["ptr"], returns: "i32" },
});

/** nfct_open subsystem (NFNL_SUBSYS_CTNETLINK). */
export const CONNTRACK = 1;

/** Multicast groups for nfct_open (NF_NETLINK_CONNTRACK_*). */
export const NF_NETLINK_CONNTRACK_NEW = 0x1;
export const NF_NETLINK_CONNTRACK_UPDATE = 0x2;
export const NF_NETLINK_CONNTRACK_DESTROY = 0x4;

/** enum nf_conntrack_query */
export const NFCT_Q_UPDATE = 1;
export const NFCT_Q_DESTROY = 2;
export const NFCT_Q_GET = 3;
export const NFCT_Q_DUMP = 5;

/** enum nf_conntrack_msg_type */
export const NFCT_T_NEW = 1;
export const NFCT_T_UPDATE = 2;
export const NFCT_T_DESTROY = 4;
export const NFCT_T_ALL = 7;

/** Callback verdicts. */
export const NFCT_CB_STOP = 0;
export const NFCT_CB_CONTINUE = 1;

/** enum nf_conntrack_attr (the ones used). */
export const ATTR_ORIG_IPV4_SRC = 0;
export const ATTR_ORIG_IPV4_DST = 1;
export const ATTR_REPL_IPV4_SRC = 2;
export const ATTR_REPL_IPV4_DST = 3;
export const ATTR_ORIG_IPV6_SRC = 4;
export const ATTR_ORIG_IPV6_DST = 5;
export const ATTR_REPL_IPV6_SRC = 6;
export const ATTR_REPL_IPV6_DST = 7;
export const ATTR_ORIG_PORT_SRC = 8;
export const ATTR_ORIG_PORT_DST = 9;
export const ATTR_REPL_PORT_SRC = 10;
export const ATTR_REPL_PORT_DST = 11;
export const ATTR_ORIG_L3PROTO = 15;
export const ATTR_ORIG_L4PROTO = 17;
export const ATTR_TCP_STATE = 19;
export const ATTR_TIMEOUT = 24;
export const ATTR_MARK = 25;
export const ATTR_ID = 31;
export const ATTR_STATUS = 32;
export const ATTR_TCP_FLAGS_ORIG = 33;
export const ATTR_TCP_FLAGS_REPL = 34;
export const ATTR_TCP_MASK_ORIG = 35;
export const ATTR_TCP_MASK_REPL = 36;
export const ATTR_HELPER_NAME = 55;
export const ATTR_ZONE = 61;

/** enum tcp_state (libnetfilter_conntrack_tcp.h), the value of ATTR_TCP_STATE. */
export const TCP_CONNTRACK_NONE = 0;
export const TCP_CONNTRACK_SYN_SENT = 1;
export const TCP_CONNTRACK_SYN_RECV = 2;
export const TCP_CONNTRACK_ESTABLISHED = 3;
export const TCP_CONNTRACK_FIN_WAIT = 4;
export const TCP_CONNTRACK_CLOSE_WAIT = 5;
export const TCP_CONNTRACK_LAST_ACK = 6;
export const TCP_CONNTRACK_TIME_WAIT = 7;
export const TCP_CONNTRACK_CLOSE = 8;
export const TCP_CONNTRACK_SYN_SENT2 = 9;

/** enum ip_conntrack_status bits (ATTR_STATUS). */
export const IPS_EXPECTED = 1 << 0;
export const IPS_SEEN_REPLY = 1 << 1;
export const IPS_ASSURED = 1 << 2;
export const IPS_CONFIRMED = 1 << 3;
export const IPS_SRC_NAT = 1 << 4;
export const IPS_DST_NAT = 1 << 5;
export const IPS_SEQ_ADJUST = 1 << 6;
export const IPS_DYING = 1 << 9;
/** Obsolete as such; the kernel reuses the bit internally as IPS_NAT_CLASH (entry clashed on insert). */
export const IPS_UNTRACKED = 1 << 12;
export const IPS_HELPER = 1 << 13;
export const IPS_OFFLOAD = 1 << 14;
export const IPS_HW_OFFLOAD = 1 << 15;

/** Per-direction TCP window tracking flag (ATTR_TCP_FLAGS_ORIG/REPL, with the matching mask). */
export const IP_CT_TCP_FLAG_BE_LIBERAL = 0x08;
