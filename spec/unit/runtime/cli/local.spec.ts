import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readKeyPair } from '../../../../bus/transport/curve.js';
import { parseConfig } from '../../../../runtime/node/config.js';
import { adoptAnchors, planLocal, validateLocal, type LocalOptions, type LocalPlanEntry } from '../../../../runtime/cli/local.js';
import { insecureLocalCluster, keyLocalCluster, localSecure, type LocalConfigFile } from '../../../../runtime/cli/local-keys.js';

const fresh = (plans: LocalPlanEntry[]): LocalConfigFile[] => plans.map((p) => ({ configPath: p.configPath, config: p.config, reused: false }));

const base: LocalOptions = { nodes: 5, groups: 2, dir: '/tmp/cluster', basePort: 9000, periodMs: 250 };

describe('runtime/cli/local plan', () => {
  const plan = planLocal(base);

  it('gives node i port P+i, HTTP port P+100+i and its own folder as data dir', () => {
    expect(plan.map((p) => p.config.listen)).to.deep.equal([9000, 9001, 9002, 9003, 9004].map((p) => `tcp://127.0.0.1:${p}`));
    expect(plan.map((p) => p.config.httpPort)).to.deep.equal([9100, 9101, 9102, 9103, 9104]);
    expect(plan[3].configPath).to.equal('/tmp/cluster/node-3/config.json');
    expect(parseConfig(insecureLocalCluster(fresh(plan))[3], plan[3].configPath).dataDir).to.equal('/tmp/cluster/node-3');
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

  it('writes configs every node accepts, saying "insecure" when asked for no keys', () => {
    const configs = insecureLocalCluster(fresh(plan));
    plan.forEach((p, i) => expect(parseConfig(configs[i], p.configPath).insecure).to.equal(true));
  });

  it('points traces into the trace folder', () => {
    const [p0] = planLocal({ ...base, traceDir: '/tmp/traces' });
    expect(resolve(p0.dir, p0.config.trace!)).to.equal(join('/tmp/traces', 'node-0.trace'));
  });

  it('gives nodes added to an earlier cluster the anchors that cluster has', () => {
    const earlier = planLocal({ ...base, nodes: 2, groups: 1 });
    const grown = adoptAnchors(planLocal({ ...base, nodes: 4 }), [earlier[0].config]);
    for (const p of grown) expect(p.config.anchors).to.deep.equal(['tcp://127.0.0.1:9000', 'tcp://127.0.0.1:9001']);
    expect(grown.map((p) => p.config.anchor)).to.deep.equal([true, true, false, false]);
    expect(() => parseConfig({ ...grown[2].config, insecure: true }, grown[2].configPath)).not.to.throw();
  });

  it('refuses arguments that cannot make a cluster', () => {
    expect(() => validateLocal({ ...base, nodes: 65, groups: 1 })).to.throw('a group holds at most 64 nodes');
    expect(() => validateLocal({ ...base, groups: 6 })).to.throw('--groups must be an integer from 1 to 5');
    expect(() => validateLocal({ ...base, basePort: 80 })).to.throw('--base-port must be');
    expect(() => validateLocal({ ...base, anchors: 0 })).to.throw('--anchors must be');
    expect(() => validateLocal(base)).not.to.throw();
  });
});

describe('runtime/cli/local keys', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mangrove-local-keys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const options = (nodes: number): LocalOptions => ({ ...base, nodes, groups: 1, dir });

  it('gives every node a key pair of its own, every config the whole peers map and the admin client, and DIR/client.key (0600) the nodes\' keys', () => {
    const plans = planLocal(options(3));
    const { configs, admin, peers } = keyLocalCluster(dir, fresh(plans));
    const nodeKeys = plans.map((p) => readKeyPair(join(p.dir, 'node.key')));
    expect(new Set(nodeKeys.map((k) => k.publicKey)).size).to.equal(3);
    expect(peers).to.deep.equal(Object.fromEntries(plans.map((p, i) => [p.config.listen, nodeKeys[i].publicKey])));
    for (const [i, c] of configs.entries()) {
      const parsed = parseConfig(c, plans[i].configPath);
      expect(parsed).to.include({ keyFile: join(plans[i].dir, 'node.key'), insecure: false });
      expect(parsed.peers).to.deep.equal(peers);
      expect(parsed.clients).to.deep.equal([{ publicKey: admin.publicKey, role: 'admin', name: 'mangrove local' }]);
      expect(statSync(join(plans[i].dir, 'node.key')).mode & 0o777).to.equal(0o600);
    }
    const clientKey = join(dir, 'client.key');
    expect(statSync(clientKey).mode & 0o777).to.equal(0o600);
    expect(JSON.parse(readFileSync(clientKey, 'utf8'))).to.deep.equal({ ...admin, nodes: peers });
  });

  it('keeps the keys of an earlier run, and adds the keys of nodes added to every peers map', () => {
    const first = keyLocalCluster(dir, fresh(planLocal(options(2))));
    const plans = planLocal(options(3));
    const files = plans.map((p, i) => ({ configPath: p.configPath, config: i < 2 ? first.configs[i] : p.config, reused: i < 2 }));
    const again = keyLocalCluster(dir, files);
    expect(again.admin).to.deep.equal(first.admin);
    for (const [endpoint, key] of Object.entries(first.peers)) expect(again.peers[endpoint]).to.equal(key);
    expect(Object.keys(again.peers)).to.have.length(3);
    expect(again.configs[0].peers).to.deep.equal(again.peers);
  });

  it('is secure unless asked, and a cluster keeps what its earlier configs say', () => {
    const plans = fresh(planLocal(options(2)));
    expect(localSecure(plans, false)).to.equal(true);
    expect(localSecure(plans, true)).to.equal(false);
    const insecure = plans.map((f) => ({ ...f, config: { ...f.config, insecure: true }, reused: true }));
    expect(localSecure(insecure, false), 'an insecure cluster stays so').to.equal(false);
    const keyed = plans.map((f) => ({ ...f, config: { ...f.config, keyFile: 'node.key' }, reused: true }));
    expect(localSecure(keyed, true), 'a keyed cluster stays so').to.equal(true);
    const older = plans.map((f) => ({ ...f, reused: true }));
    expect(localSecure(older, false), 'configs from before keys take today\'s choice').to.equal(true);
  });
});
