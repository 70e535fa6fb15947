/**
 * How a command reaches a node: `--connect` checked before anything is
 * loaded or sent, then one request and its answer with the client's key
 * (`--key`, runtime/client/client-key.ts), the client closed whatever
 * happens. The ZeroMQ client is loaded only here, when a command
 * needs it, so `mangrove --help` pays nothing for it.
 */
import { MangroveError } from '../../bus/errors.js';

/** The endpoint `--connect` names, refused with E_BAD_ARGUMENT unless it is a tcp endpoint. */
export async function checkConnect(endpoint: string, example: string): Promise<string> {
  const { isTcpEndpoint } = await import('../../bus/transport/endpoint.js');
  if (!isTcpEndpoint(endpoint)) {
    throw new MangroveError('E_BAD_ARGUMENT', `--connect must be a tcp endpoint like ${example} (got ${JSON.stringify(endpoint)})`);
  }
  return endpoint;
}

/** One request to the node at `endpoint`; its `result`. */
export async function ask<T>(endpoint: string, timeoutMs: number, kind: 'client.status' | 'client.fault' | 'client.ndb_update', body: object, example: string): Promise<T> {
  await checkConnect(endpoint, example);
  const { ZmqClient } = await import('../../bus/transport/zmq-client.js');
  const { clientCurveFor, findClientKey } = await import('../client/client-key.js');
  const client = await ZmqClient.connect(endpoint, { timeoutMs, curve: clientCurveFor(endpoint, findClientKey()) });
  try {
    const reply = (await client.request(kind, body as never)) as { result: T };
    return reply.result;
  } finally {
    await client.close();
  }
}
