/**
 * What a node is told at start, already validated (runtime/node/config.ts reads
 * and checks the JSON file; the simulator builds these directly).
 */
export interface NodeSettings {
  /** Permanent id (M1), created on first start and kept in the store. */
  id: string;
  /** Incarnation number, bumped on every start. */
  epoch: number;
  endpoint: string;
  pid: number;
  anchor: boolean;
  votes: number;
  group: number;
  /** Endpoints of the anchors to contact (all configured anchors, for an anchor). */
  seeds: readonly string[];
  periodMs: number;
  quorumTimeoutMs: number;
  /** Heartbeat monitors in order of preference (M3); empty: anchors first, lowest id. */
  monitorPreference: readonly string[];
  /** Primary anchor nodes in order of preference (M16); empty: lowest id. */
  panPreference: readonly string[];
  faultInjection: boolean;
  software: string;
  /** The node's HTTP port once bound (/status, /metrics, /machines); absent or null when it serves none. */
  httpPort?: number | null;
  /** Its links are authenticated (CURVE, keys in its config): only members and known clients get in. Absent: insecure (the simulator). */
  secure?: boolean;
}
