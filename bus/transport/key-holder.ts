/**
 * Who may be at the other end of a CURVE link: a node of the cluster, or a
 * client with one of three roles (what each role may ask is the node's
 * business, actors/access.ts). Plain types, imported by the transport's
 * files without making them import each other.
 */
export const CLIENT_ROLES = ['read-only', 'read-write', 'admin'] as const;
export type ClientRole = (typeof CLIENT_ROLES)[number];

/** Who holds a key a CURVE transport lets in: a node of `peers`, or a client of the config's `clients`. */
export type KeyHolder = { kind: 'node' } | { kind: 'client'; name: string; role: ClientRole };
