/**
 * Replays every spec/scenarios/<folder>/*.txt (spec/helpers/scenario.ts has
 * the format) against the machines in ./machines.ts. `REWRITE=1` records
 * what the machines produce into the files instead of comparing, for review
 * with `git diff`.
 */
import { expect } from 'chai';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  formatValue,
  mismatchReport,
  parseScenario,
  parseValue,
  runScenario,
  type ScenarioFolder,
} from '../helpers/scenario.js';
import type { AnyStateMachine } from 'xstate';
import { heartbeatMember } from '../../machines/membership/heartbeat-member.js';
import { panElectionMachine } from '../../machines/membership/pan-election.js';
import { quorumMachine } from '../../machines/membership/quorum.js';
import { pageHomeMachine } from '../../machines/memory/page-home.js';
import { forgetfulAcceptor } from '../fixtures/forgetful-acceptor.js';
import { scenarioTable } from './machines.js';

const here = dirname(fileURLToPath(import.meta.url));
const rewrite = process.env.REWRITE === '1';

function scenarioFiles(): { folder: string; path: string; name: string }[] {
  const out: { folder: string; path: string; name: string }[] = [];
  for (const folder of readdirSync(here).sort()) {
    const dir = join(here, folder);
    if (!statSync(dir).isDirectory()) continue;
    for (const f of readdirSync(dir).sort()) {
      if (f.endsWith('.txt')) out.push({ folder, path: join(dir, f), name: relative(join(here, '..', '..'), join(dir, f)) });
    }
  }
  return out;
}

const files = scenarioFiles();

function folderOf(folder: string): ScenarioFolder {
  const f = scenarioTable[folder];
  if (!f) throw new Error(`spec/scenarios/${folder}: no machine for this folder in spec/scenarios/machines.ts`);
  return f;
}

describe('scenarios (spec/scenarios/<machine>/*.txt)', () => {
  it('has scenario files for every machine folder in the table', () => {
    const folders = new Set(files.map((f) => f.folder));
    expect([...folders].sort()).to.deep.equal(Object.keys(scenarioTable).sort());
  });

  for (const f of files) {
    it(f.name, () => {
      const text = readFileSync(f.path, 'utf8');
      const result = runScenario(text, f.name, folderOf(f.folder));
      if (rewrite && result.errors.length === 0) {
        if (result.rewritten !== text) writeFileSync(f.path, result.rewritten);
        return;
      }
      if (result.errors.length > 0 || result.mismatches.length > 0) throw new Error(mismatchReport(result));
    });
  }
});

describe('the scenario harness', () => {
  /** The index of one output line near the middle of the file, and the file with that line altered. */
  function altered(text: string, name: string): { line: number; text: string } {
    const { lines, steps } = parseScenario(text, name);
    const withOutput = steps.filter((s) => s.outputEnd > s.outputStart);
    const step = withOutput[Math.floor(withOutput.length / 2)];
    const i = step.outputEnd - 1;
    const copy = [...lines];
    copy[i] = `${copy[i]} (altered)`;
    return { line: i + 1, text: copy.join('\n') };
  }

  for (const f of files) {
    it(`fails ${f.name} when one recorded line differs, naming the line, and rewrites it back`, () => {
      const text = readFileSync(f.path, 'utf8');
      const bad = altered(text, f.name);
      const result = runScenario(bad.text, f.name, folderOf(f.folder));
      expect(result.mismatches).to.have.length(1);
      expect(result.mismatches[0].line).to.equal(bad.line);
      expect(result.mismatches[0].message).to.contain(`${f.name}:${bad.line}:`);
      expect(result.mismatches[0].message).to.match(new RegExp(`\\n\\s*${bad.line} - .*\\(altered\\)`));
      expect(mismatchReport(result)).to.contain('REWRITE=1');
      // Rewriting restores exactly the recorded file: steps and comments are kept.
      if (!rewrite) expect(result.rewritten).to.equal(text);
    });
  }

  const tiny: ScenarioFolder = scenarioTable['page-home'];

  it('reports an output line the machine no longer produces, and one it newly produces', () => {
    const text = ['# a read by the owner', 'start', '----', 'state: idle', 'emitted: (none)', 'extra line', ''].join('\n');
    const result = runScenario(text, 'x.txt', tiny);
    expect(result.mismatches.map((m) => m.line)).to.deep.equal([6]);
    expect(result.mismatches[0].message).to.contain('   6 - extra line');
    const missing = runScenario(['start', '----', 'state: idle', ''].join('\n'), 'y.txt', tiny);
    expect(missing.mismatches[0].message).to.contain('+ emitted: (none)');
    expect(missing.rewritten).to.equal(['start', '----', 'state: idle', 'emitted: (none)', ''].join('\n'));
  });

  it('fills in an empty output block on rewrite, keeping comments and spacing', () => {
    const text = ['# c1', '', 'start', '----', '', '# c2', 'send REQUEST mode=read from=h req=1', '----', ''].join('\n');
    const result = runScenario(text, 'z.txt', tiny);
    expect(result.rewritten).to.equal(
      [
        '# c1',
        '',
        'start',
        '----',
        'state: idle',
        'emitted: (none)',
        '',
        '# c2',
        'send REQUEST mode=read from=h req=1',
        '----',
        'state: idle',
        'emitted:',
        '  served request={from:h,mode:read,req:1} round=1 version=0',
        '',
      ].join('\n'),
    );
  });

  it('reports a step it cannot run, naming the file and line, and goes on', () => {
    const text = ['jump 3', '----', '', 'send REQUEST mode=read from=h req=1', '----', '', 'start', '----', ''].join('\n');
    const result = runScenario(text, 'w.txt', tiny);
    expect(result.errors).to.have.length(2);
    expect(result.errors[0]).to.match(/^w\.txt:1: jump 3: unknown command "jump"/);
    expect(result.errors[1]).to.match(/^w\.txt:4: send REQUEST mode=read from=h req=1: name the actor: none started/);
    expect(result.rewritten.split('\n').slice(0, 3)).to.deep.equal(['jump 3', '----', 'error: unknown command "jump": start, send, advance, tick, crash, restart, show']);
    expect(result.rewritten).to.contain('start\n----\nstate: idle\nemitted: (none)\n');
    expect(mismatchReport(result)).to.match(/^Steps that could not run:\nw\.txt:1: /);
    expect(() => runScenario(['start', 'state: idle', ''].join('\n'), 'v.txt', tiny)).to.throw(/^v\.txt:1: the step has no ----/);
  });

  it("runs the README's example as written", () => {
    const readme = readFileSync(join(here, 'README.md'), 'utf8');
    const example = /```\n(# [^]*?)```/.exec(readme)?.[1];
    expect(example, 'the first code block of README.md').to.be.a('string');
    const result = runScenario(example ?? '', 'README.md', folderOf('heartbeat'));
    expect(result.errors).to.deep.equal([]);
    expect(result.mismatches.map((m) => m.message)).to.deep.equal([]);
  });

  it('reads and writes one value notation', () => {
    const v = { b: [1, 'two', true, null], a: { 'x y': '1', z: 'a/1' }, c: new Uint8Array([1, 171]), d: 255n, e: 'add:x@10' };
    const s = formatValue(v);
    expect(s).to.equal('{a:{"x y":"1",z:a/1},b:[1,two,true,null],c:<01ab>,d:0xff,e:add:x@10}');
    expect(parseValue(s)).to.deep.equal(v);
    expect(parseValue('{"a": [1, 2], b : "c d"}')).to.deep.equal({ a: [1, 2], b: 'c d' });
  });
});

/**
 * Each protocol's scenarios pin its behaviour: the machine with one guard
 * or action changed (as a bug would change it) fails them.
 */
describe('scenarios fail when a machine changes', () => {
  function withMachine(folder: string, kind: string, machine: AnyStateMachine): ScenarioFolder {
    const f = folderOf(folder);
    return { ...f, kinds: { ...f.kinds, [kind]: { ...f.kinds[kind], machine } } };
  }

  function expectFails(file: string, folder: ScenarioFolder): void {
    const name = `spec/scenarios/${file}`;
    const result = runScenario(readFileSync(join(here, file), 'utf8'), name, folder);
    expect(result.mismatches.length, `${name} still passes`).to.be.greaterThan(0);
    expect(result.mismatches[0].message).to.match(new RegExp(`^${name}:\\d+: `));
  }

  it('quorum: a monitor that adopts state no anchor computed', () => {
    const broken = quorumMachine.provide({
      guards: { adoptsQuorum: ({ context, event }) => !context.anchor && event.type === 'QUORUM_HEARD' && event.has && event.ttlMs > 0 },
    });
    expectFails('quorum/roles.txt', withMachine('quorum', 'quorum', broken));
  });

  it('quorum: an adopted state that lives a full timeout, whatever its sender had left', () => {
    const broken = quorumMachine.provide({ delays: { quorumExpiry: ({ context }) => context.quorumTimeoutMs } });
    expectFails('quorum/expiry.txt', withMachine('quorum', 'quorum', broken));
  });

  it('heartbeat: a member that ranks claimants by id alone', () => {
    const broken = heartbeatMember.provide({
      guards: { isBetterClaim: ({ context, event }) => event.type === 'CLAIM' && event.from < context.self },
    });
    expectFails('heartbeat/failover.txt', withMachine('heartbeat', 'member', broken));
    expectFails('heartbeat/arbitration.txt', withMachine('heartbeat', 'member', broken));
  });

  it('PAN election: a candidate that wins with half the votes', () => {
    const broken = panElectionMachine.provide({ guards: { hasWon: ({ context }) => 2 * context.granted.length >= context.view.totalVotes - 1 } });
    expectFails('pan-election/election.txt', withMachine('pan-election', 'anchor', broken));
  });

  it('node-db: an acceptor whose promises forget the change it accepted', () => {
    expectFails('node-db/lost-commit.txt', withMachine('node-db', 'subordinate', forgetfulAcceptor));
  });

  it('page home: a confirmation taken for any request of the requester', () => {
    const broken = pageHomeMachine.provide({
      guards: { confirmsCurrent: ({ context, event }) => event.type === 'CONFIRMED' && context.current?.from === event.from },
    });
    expectFails('page-home/coherence.txt', withMachine('page-home', 'home', broken));
  });
});
