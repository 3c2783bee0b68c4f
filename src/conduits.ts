// DSA conduit mode (`run --dsa`): the datapath sits on a switch's conduit, where every user
// port's frames carry the switch's tag. The tagger's receive format is a load-time parameter
// (offload_params.dsa_tagger, with the user ports in dsa_ports), so each conduit configuration
// gets a program instance of its own, sharing every map with the others. Pure: it reads the
// topology snapshot that src/nexthop.ts loads (IFLA_DSA_CONDUIT of the user ports, their
// phys_port_name, /sys/class/net/CONDUIT/dsa/tagging).
import { DSA_TAGGERS } from "./abi.ts";
import { dsaPortIndex, TopologyError, type Topology } from "./topology.ts";

/** The highest port dsa_ports can name (bit 31). */
const MAX_PORT = 31;

export interface Conduit {
  ifindex: number;
  ifname: string;
  /** The kernel's name of the tagging protocol ("mtk", "qca", ...). */
  tagger: string;
  /** DSA_TAG_* (offload_params.dsa_tagger). */
  taggerId: number;
  /** Bit n: switch port n has a user device (offload_params.dsa_ports). */
  ports: number;
  /** The user ports, for messages: "lan1 (port 1)"; ports the datapath leaves to the kernel say why. */
  users: string[];
}

/** Program instances are shared by conduits with the same configuration. */
export function conduitInstanceKey(c: Pick<Conduit, "taggerId" | "ports">): string {
  return `${c.taggerId}/${c.ports >>> 0}`;
}

/**
 * The DSA conduits among the devices to attach to, by ifindex. A conduit whose tagging protocol
 * the kernel does not tell, or the datapath does not parse, is an error (TopologyError): the
 * admin asked for conduit mode, and without --dsa the user ports take the programs instead.
 */
export function planConduits(topo: Topology, devices: readonly { ifindex: number; ifname: string }[]): Map<number, Conduit> {
  const out = new Map<number, Conduit>();
  for (const d of devices) {
    const users = topo.allLinks()
      .filter((l) => l.kind === "dsa" && (l.dsaConduit || l.link) === d.ifindex)
      .sort((a, b) => (dsaPortIndex(a) ?? MAX_PORT + 1) - (dsaPortIndex(b) ?? MAX_PORT + 1));
    if (!users.length) continue;
    const tagger = topo.dsaTagger(d.ifindex);
    if (tagger === null) {
      throw new TopologyError(`${d.ifname} is a DSA conduit whose tagging protocol the kernel does not tell (/sys/class/net/${d.ifname}/dsa/tagging); run without --dsa to attach to its user ports`);
    }
    const taggerId = DSA_TAGGERS[tagger];
    if (taggerId === undefined) {
      throw new TopologyError(`${d.ifname}: DSA tagging protocol "${tagger}" is not one the datapath parses (${Object.keys(DSA_TAGGERS).join(", ")}); run without --dsa to attach to its user ports`);
    }
    let ports = 0;
    const names: string[] = [];
    for (const u of users) {
      const port = dsaPortIndex(u);
      if (port === null || port > MAX_PORT) {
        names.push(`${u.name} (no port index: its frames go to the kernel)`);
        continue;
      }
      ports |= 1 << port;
      names.push(`${u.name} (port ${port})`);
    }
    out.set(d.ifindex, { ifindex: d.ifindex, ifname: d.ifname, tagger, taggerId, ports: ports >>> 0, users: names });
  }
  return out;
}

/** "DSA conduit, tagger mtk, user ports lan1 (port 1), wan (port 4)": for logs and --dry-run. */
export function describeConduit(c: Conduit): string {
  return `DSA conduit, tagger ${c.tagger}, user ports ${c.users.join(", ")}`;
}
