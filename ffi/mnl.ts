// Thin bindings to libmnl (1.0.4+): the netlink socket calls only; messages are built and parsed
// in TypeScript (src/netlink.ts). Sizes are size_t/ssize_t, passed as 64-bit integers.
import { dlopen, FFIType } from "bun:ffi";
import { findLibrary } from "./library-path.ts";

export const libmnl = dlopen(findLibrary(["libmnl.so.0"]), {
  mnl_socket_open2: { args: ["i32", "i32"], returns: "ptr" },
  mnl_socket_bind: { args: ["ptr", "u32", "i32"], returns: "i32" },
  mnl_socket_setsockopt: { args: ["ptr", "i32", "ptr", "u32"], returns: "i32" },
  mnl_socket_sendto: { args: ["ptr", "ptr", "usize"], returns: FFIType.i64_fast },
  mnl_socket_recvfrom: { args: ["ptr", "ptr", "usize"], returns: FFIType.i64_fast },
  mnl_socket_close: { args: ["ptr"], returns: "i32" },
  mnl_socket_get_fd: { args: ["ptr"], returns: "i32" },
});

export const NETLINK_ROUTE = 0;
export const MNL_SOCKET_AUTOPID = 0;

/** socket(2) type flags for mnl_socket_open2 (x86_64 / aarch64 values). */
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

/** SOL_NETLINK options for mnl_socket_setsockopt (linux/netlink.h). */
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
