/**
 * What a node's address looks like on the wire: `tcp://HOST:PORT`, with a
 * concrete host (a node announces this endpoint to its peers, so no `*`).
 * Config, the CLI and the client library all check endpoints here.
 */
import { limits } from '../envelope.js';

const TCP_ENDPOINT = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

export function isTcpEndpoint(s: string): boolean {
  const m = TCP_ENDPOINT.exec(s);
  if (!m || s.length > limits.endpointCharsMax) return false;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535;
}
