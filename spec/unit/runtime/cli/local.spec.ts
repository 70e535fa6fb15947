import { expect } from 'chai';
import { join, resolve } from 'node:path';
import { parseConfig } from '../../../../runtime/node/config.js';
import { adoptAnchors, planLocal, validateLocal, type LocalOptions } from '../../../../runtime/cli/local.js';

const base: LocalOptions = { nodes: 5, groups: 2, dir: '/tmp/cluster', basePort: 9000, periodMs: 250 };

describe('runtime/cli/local plan', () => {
  const plan = planLocal(base);

  it('gives node i port P+i, HTTP port P+100+i and its own folder as data dir', () => {
    expect(plan.map((p) => p.config.listen)).to.deep.equal([9000, 9001, 9002, 9003, 9004].map((p) => `tcp://127.0.0.1:${p}`));
    expect(plan.map((p) => p.config.httpPort)).to.deep.equal([9100, 9101, 9102, 9103, 9104]);
    expect(plan[3].configPath).to.equal('/tmp/cluster/node-3/config.json');
    expect(parseConfig(plan[3].config, plan[3].configPath).dataDir).to.equal('/tmp/cluster/node-3');
  });

  it('makes the first min(3, N) nodes anchors, listed by every node', () => {
    expect(plan.map((p) => p.config.anchor)).to.deep.equal([true, true, true, false, false]);
    for (const p of plan) expect(p.config.anchors).to.deep.equal(['tcp://127.0.0.1:9000', 'tcp://127.0.0.1:9001', 'tcp://127.0.0.1:9002']);
    expect(planLocal({ ...base, nodes: 2, groups: 1 }).every((p) => p.config.anchor)).to.equal(true);
  });

  it('puts node i in group i mod G, with fault injection on', () => {
    expect(plan.map((p) => p.config.group)).to.deep.equal([0, 1, 0, 1, 0]);
    expect(plan.every((p) => p.config.faultInjection && p.config.periodMs === 250)).to.equal(true);
  });

  it('writes configs every node accepts', () => {
    for (const p of plan) expect(() => parseConfig(p.config, p.configPath)).not.to.throw();
  });

  it('points traces into the trace folder', () => {
    const [p0] = planLocal({ ...base, traceDir: '/tmp/traces' });
    expect(resolve(p0.dir, p0.config.trace!)).to.equal(join('/tmp/traces', 'node-0.trace'));
  });

  it('gives nodes added to an earlier cluster the anchors that cluster has', () => {
    const earlier = planLocal({ ...base, nodes: 2, groups: 1 });
    const grown = adoptAnchors(planLocal({ ...base, nodes: 4 }), [parseConfig(earlier[0].config, earlier[0].configPath)]);
    for (const p of grown) expect(p.config.anchors).to.deep.equal(['tcp://127.0.0.1:9000', 'tcp://127.0.0.1:9001']);
    expect(grown.map((p) => p.config.anchor)).to.deep.equal([true, true, false, false]);
    expect(() => parseConfig(grown[2].config, grown[2].configPath)).not.to.throw();
  });

  it('refuses arguments that cannot make a cluster', () => {
    expect(() => validateLocal({ ...base, nodes: 65, groups: 1 })).to.throw('a group holds at most 64 nodes');
    expect(() => validateLocal({ ...base, groups: 6 })).to.throw('--groups must be an integer from 1 to 5');
    expect(() => validateLocal({ ...base, basePort: 80 })).to.throw('--base-port must be');
    expect(() => validateLocal({ ...base, anchors: 0 })).to.throw('--anchors must be');
    expect(() => validateLocal(base)).not.to.throw();
  });
});
