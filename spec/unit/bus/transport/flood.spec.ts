/**
 * A cap per inbound connection (bus/transport/flood-gate.ts): the bucket
 * on the simulated clock, then a real ROUTER flooded by one raw DEALER on
 * 127.0.0.1, whose excess is refused and counted as 'flood' while another
 * client is served all along.
 */
import { expect } from 'chai';
import * as zmq from 'zeromq';
import { encode } from '../../../../bus/codec.js';
import { FloodGate } from '../../../../bus/transport/flood-gate.js';
import { ZmqClient } from '../../../../bus/transport/zmq-client.js';
import { ZmqTransport } from '../../../../bus/transport/zmq.js';
import { SimClock, WallClock } from '../../../../runtime/world/clock.js';
import { freePort } from '../../../helpers/ports.js';
import { until } from '../../../helpers/until.js';
import { envelope } from './transport-compliance.js';

describe('bus/transport/flood-gate', () => {
  it('lets a burst through, then the rate, per link, each link on its own', () => {
    const clock = new SimClock(1000);
    const gate = new FloodGate({ perSecond: 10, burst: 5 }, clock);
    const admitted = (key: string, n: number) => Array.from({ length: n }, () => gate.admit(key)).filter(Boolean).length;
    expect(admitted('a', 8)).to.equal(5);
    expect(admitted('b', 3), 'another link has its own bucket').to.equal(3);
    clock.advance(300);
    expect(admitted('a', 8), '3 tokens in 300 ms at 10/s').to.equal(3);
    clock.advance(10_000);
    expect(admitted('a', 8), 'never more than the burst, however long the quiet').to.equal(5);
  });

  it('takes the burst as a tenth of a second of the rate when none is given, at least one', () => {
    const gate = new FloodGate({ perSecond: 40 }, new SimClock(0));
    expect(Array.from({ length: 10 }, () => gate.admit('x')).filter(Boolean)).to.have.length(4);
    const slow = new FloodGate({ perSecond: 3 }, new SimClock(0));
    expect(Array.from({ length: 10 }, () => slow.admit('x')).filter(Boolean)).to.have.length(1);
  });

  describe('on a real ROUTER', function () {
    this.timeout(20_000);
    let node: ZmqTransport;
    let flooder: zmq.Dealer;
    let client: ZmqClient;

    before(async () => {
      node = await ZmqTransport.open({ self: 'node-f', endpoint: `tcp://127.0.0.1:${await freePort()}`, clock: new WallClock(), flood: { perSecond: 500 } });
      node.inbound.subscribe(({ env, route }) => {
        if (env.kind === 'client.status') node.reply(route, envelope(node.self, env.from, 1, 'reply.ok', { re: env.seq, body: { result: { ok: true } } }));
      });
      flooder = new zmq.Dealer({ linger: 0 });
      flooder.connect(node.endpoint);
      client = await ZmqClient.connect(node.endpoint, { timeoutMs: 5000 });
    });
    after(async () => {
      flooder.close();
      await client.close();
      await node.close();
    });

    it("refuses one connection's excess as 'flood', counted, and serves another connection meanwhile", async () => {
      const frame = encode(envelope('flooder', 'node-f', 1));
      for (let i = 0; i < 2000; i++) await flooder.send(frame);
      await until('the flood to be read', () => node.stats().received + node.stats().rejectedByReason.flood >= 2000, { timeoutMs: 10_000, pollMs: 10 });
      const s = node.stats();
      expect(s.rejectedByReason.flood).to.be.at.least(1000);
      // Its burst (50) and what the rate refilled while it sent.
      expect(s.received).to.be.at.least(50).and.below(1000);
      expect(await client.request('client.status', {})).to.deep.equal({ result: { ok: true } });
    });
  });
});
