/**
 * Machine export (M26): every machine in the catalog exports as Mermaid,
 * SCXML and JSON, and each export shows every state, event, guard and
 * transition the machine defines. The expected sets come from XState
 * (xstate/graph's getStateNodes, the machine's `events`, its StateNodes'
 * transitions), not from our chart, so a chart that drops something fails.
 */
import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { and, assign, createMachine, not, setup, type AnyStateMachine, type AnyStateNode } from 'xstate';
import { getStateNodes } from 'xstate/graph';
import { machineName as memberName } from '../../../../machines/membership/heartbeat-member.js';
import { machineName as monitorName } from '../../../../machines/membership/heartbeat-monitor.js';
import { machineName as bootstrapName } from '../../../../machines/membership/node-db-bootstrap.js';
import { machineName as coordinatorName } from '../../../../machines/membership/node-db-coordinator.js';
import { machineName as subordinateName } from '../../../../machines/membership/node-db-subordinate.js';
import { machineName as nodeStateName } from '../../../../machines/recovery/node-state.js';
import { machineName as pageHomeName } from '../../../../machines/memory/page-home.js';
import { machineName as pageLockName } from '../../../../machines/memory/page-lock.js';
import { machineName as byteRangeLockName } from '../../../../machines/fs/byte-range-lock.js';
import { machineName as rebuildCoordinatorName } from '../../../../machines/recovery/rebuild-coordinator.js';
import { machineName as rebuildParticipantName } from '../../../../machines/recovery/rebuild-participant.js';
import { machineName as arenaFailoverName } from '../../../../machines/recovery/arena-failover.js';
import { machineName as panName } from '../../../../machines/membership/pan-election.js';
import { machineName as quorumName } from '../../../../machines/membership/quorum.js';
import { renderChart, toMermaid, toScxml } from '../../../../runtime/inspect/diagram.js';
import { findMachine, machineCatalog, machineNames } from '../../../../runtime/inspect/catalog.js';
import { chartOf, type Chart } from '../../../../runtime/inspect/chart.js';
import { CLI, mangrove } from '../../../helpers/run-cli.js';

/** What XState itself says a machine has. */
function facts(machine: AnyStateMachine) {
  const nodes = getStateNodes(machine).filter((n) => n !== machine.root);
  const all: AnyStateNode[] = [machine.root, ...nodes];
  let edges = 0;
  const guards = new Set<string>();
  let eventless = 0;
  for (const n of all) {
    const ts = [...[...n.transitions.values()].flat(), ...(n.always ?? [])];
    eventless += (n.always ?? []).length;
    for (const t of ts) {
      edges += Math.max(1, t.target?.length ?? 0);
      if (typeof t.guard === 'string') guards.add(t.guard);
    }
  }
  const events = machine.events as string[];
  return {
    paths: nodes.map((n) => n.path.join('.')),
    keys: nodes.map((n) => n.key),
    finals: nodes.filter((n) => n.type === 'final').map((n) => n.path.join('.')),
    // A parallel machine (the rebuild participant) starts in all its regions at once: no one initial state.
    initial: machine.root.type === 'parallel' ? null : (machine.root.initial.target[0].key as string),
    events,
    namedEvents: events.filter((e) => !e.startsWith('xstate.after.')),
    delays: events.filter((e) => e.startsWith('xstate.after.')).map((e) => e.split('.')[2]),
    guards: [...guards],
    edges,
    eventless,
  };
}

/**
 * A small well-formedness check: one root, balanced tags, quoted unique
 * attributes, escaped text. Enough to catch what a string template gets wrong.
 */
function checkWellFormedXml(text: string): { root: string; attrs: Record<string, string> } {
  let s = text.replace(/^<\?xml[^?]*\?>\s*/, '').replace(/<!--[\s\S]*?-->/g, '');
  const stack: string[] = [];
  let root: { root: string; attrs: Record<string, string> } | undefined;
  const token = /<(\/?)([A-Za-z_][\w.:-]*)((?:\s+[A-Za-z_][\w.:-]*="[^"<]*")*)\s*(\/?)>|([^<]+)/y;
  while (s.length > 0) {
    token.lastIndex = 0;
    const m = token.exec(s);
    if (!m) throw new Error(`not XML at: ${s.slice(0, 80)}`);
    s = s.slice(m[0].length);
    const [, close, name, attrText, selfClose, textNode] = m;
    if (textNode !== undefined) {
      if (stack.length === 0 && textNode.trim() !== '') throw new Error(`text outside the root: ${textNode.slice(0, 40)}`);
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(textNode)) throw new Error(`unescaped & in ${textNode.slice(0, 40)}`);
      continue;
    }
    if (close) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes nothing open`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([A-Za-z_][\w.:-]*)="([^"]*)"/g)) {
      if (a[1] in attrs) throw new Error(`attribute ${a[1]} twice on <${name}>`);
      if (/&(?!(amp|lt|gt|quot|apos);)/.test(a[2])) throw new Error(`unescaped & in ${a[1]}="${a[2]}"`);
      attrs[a[1]] = a[2];
    }
    if (stack.length === 0) {
      if (root) throw new Error(`a second root element <${name}>`);
      root = { root: name, attrs };
    }
    if (!selfClose) stack.push(name);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (!root) throw new Error('no root element');
  return root;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('runtime/inspect/catalog', () => {
  it('names every protocol machine by its file\'s machineName, which is its XState id', () => {
    expect(machineNames()).to.deep.equal([
      memberName,
      monitorName,
      quorumName,
      bootstrapName,
      subordinateName,
      coordinatorName,
      panName,
      nodeStateName,
      rebuildParticipantName,
      rebuildCoordinatorName,
      arenaFailoverName,
      pageHomeName,
      pageLockName,
      byteRangeLockName,
    ]);
    for (const e of machineCatalog) expect(e.machine.id, e.name).to.equal(e.name);
  });

  it('refuses an unknown name with E_NOT_FOUND, naming the known ones', () => {
    expect(() => findMachine('heartbeat')).to.throw(/no protocol machine is named "heartbeat"; the machines are: heartbeat-member, heartbeat-monitor/).with.property('code', 'E_NOT_FOUND');
  });
});

describe('runtime/inspect/diagram: every machine in every format', () => {
  for (const { name, machine } of machineCatalog) {
    describe(name, () => {
      const f = facts(machine);
      const chart = chartOf(machine);

      it('Mermaid: a stateDiagram-v2 with every state, event, delay, guard and transition', () => {
        const text = toMermaid(chart);
        const lines = text.split('\n');
        expect(lines[0]).to.equal('stateDiagram-v2');
        for (const key of f.keys) expect(text, `state ${key}`).to.match(new RegExp(`(^|[\\s"])${escape(key)}($|[\\s"])`, 'm'));
        for (const e of f.namedEvents) expect(text, `event ${e}`).to.match(new RegExp(`: ${escape(e)}\\b`));
        for (const d of f.delays) expect(text, `delay ${d}`).to.include(`: after ${d}`);
        for (const g of f.guards) expect(text, `guard ${g}`).to.include(`[${g}]`);
        if (f.eventless > 0) expect(text).to.include(': always');
        expect(lines.filter((l) => l.includes(' --> ') && !l.includes('[*]')), 'one edge per transition and target').to.have.length(f.edges);
        if (f.initial !== null) expect(text).to.match(new RegExp(`\\[\\*\\] --> ${escape(f.initial)}$`, 'm'));
        for (const fin of f.finals) expect(text, `final ${fin}`).to.match(new RegExp(`${escape(fin.replace(/\./g, '_'))} --> \\[\\*\\]$`, 'm'));
      });

      it('SCXML: well-formed, with every state, event, guard and transition', () => {
        const text = toScxml(chart);
        const root = checkWellFormedXml(text);
        expect(root.root).to.equal('scxml');
        expect(root.attrs.xmlns).to.equal('http://www.w3.org/2005/07/scxml');
        expect(root.attrs.name).to.equal(name);
        // The machine's initial state, or the state that wraps the whole machine (a parallel root, or a root with transitions of its own).
        expect(root.attrs.initial, 'the initial state').to.be.oneOf([f.initial, name]);
        expect(text, 'the initial state is one of the document\'s').to.match(new RegExp(`<(state|parallel) id="${escape(root.attrs.initial)}"`));
        for (const p of f.paths) expect(text, `state ${p}`).to.match(new RegExp(`<(state|final|parallel|history) id="${escape(p)}"`));
        for (const p of f.finals) expect(text).to.include(`<final id="${p}"`);
        for (const e of f.events) expect(text, `event ${e}`).to.include(`event="${e}"`);
        for (const g of f.guards) expect(text, `guard ${g}`).to.include(`cond="${g}"`);
        expect(text.match(/<transition[ >/]/g) ?? [], 'one <transition> per transition').to.have.length(chart.transitions.length);
        expect(text.match(/<transition(?![^>]*event=)[^>]*>/g) ?? [], 'eventless transitions have no event').to.have.length(f.eventless);
      });

      it('JSON: the plain chart, every state and event, targets that exist', () => {
        const parsed = JSON.parse(renderChart(chart, 'json')) as Chart;
        expect(parsed.format).to.equal('mangrove.chart/1');
        expect(parsed.machine).to.equal(name);
        expect(parsed.initial).to.equal(f.initial);
        expect(parsed.states.map((s) => s.id)).to.have.members(f.paths);
        expect(new Set(parsed.transitions.map((t) => t.event).filter((e) => e !== null))).to.deep.equal(new Set(f.events));
        const ids = new Set(['', ...f.paths]);
        for (const t of parsed.transitions) {
          expect(ids.has(t.source), `source ${t.source}`).to.equal(true);
          for (const target of t.target ?? []) expect(ids.has(target), `target ${target}`).to.equal(true);
          expect(t.actions.every((a) => !a.startsWith('xstate.')), 'XState\'s own delay scheduling is left out').to.equal(true);
        }
      });
    });
  }
});

describe('runtime/inspect/diagram: what the charts say', () => {
  it('draws heartbeat-member as its code defines it', () => {
    const text = renderChart(chartOf(findMachine('heartbeat-member').machine), 'mermaid');
    for (const line of [
      '  [*] --> choosing',
      '  choosing --> following : always [knowsMonitor]',
      '  choosing --> searching : always',
      '  following --> following : MONITOR_PULSE [isFromMonitor] / heardMonitor, readBitmap',
      '  following --> candidate : after tick [monitorSilent]',
      '  following --> following : after tick (reenter) / countTick, pulseIfDue',
      '  candidate --> promoted : after claimWindow',
      '  promoted --> [*]',
    ]) {
      expect(text.split('\n')).to.include(line);
    }
  });

  it('nests heartbeat-monitor\'s ticking inside monitoring', () => {
    const chart = chartOf(findMachine('heartbeat-monitor').machine);
    expect(chart.states.find((s) => s.id === 'monitoring.ticking')).to.include({ key: 'ticking', parent: 'monitoring', type: 'atomic' });
    expect(chart.states.find((s) => s.id === 'monitoring')).to.deep.include({ type: 'compound', initial: 'monitoring.ticking', entry: ['broadcast'] });
    const text = toMermaid(chart);
    expect(text).to.match(/state monitoring \{\n\s+\[\*\] --> monitoring_ticking\n\s+state "ticking" as monitoring_ticking\n/);
    expect(toScxml(chart)).to.include('<state id="monitoring" initial="monitoring.ticking">');
  });

  it('draws the machine\'s own transitions (node-db-subordinate) from a superstate around it', () => {
    const chart = chartOf(findMachine('node-db-subordinate').machine);
    const text = toMermaid(chart);
    expect(text).to.include('state "node-db-subordinate" as machine_');
    expect(text.split('\n')).to.include.members(['  machine_ --> accepted : ACCEPT [grants]', '  machine_ --> machine_ : ACCEPT / refuse']);
    const xml = toScxml(chart);
    expect(xml).to.include('<scxml xmlns="http://www.w3.org/2005/07/scxml" xmlns:m="urn:mangrove:machine-action" version="1.0" name="node-db-subordinate" initial="node-db-subordinate">');
    // XState does not leave the machine for a child target; SCXML says so with type="internal".
    expect(xml).to.include('<transition event="ACCEPT" cond="grants" target="accepted" type="internal"><m:action name="accept"/></transition>');
  });

  it('keeps parameters of actions and shows targetless transitions as self-loops with their actions', () => {
    const chart = chartOf(findMachine('node-state').machine);
    const resume = chart.transitions.find((t) => t.event === 'RESUME')!;
    expect(resume).to.deep.equal({ source: 'rebuilding', kind: 'event', event: 'RESUME', delay: null, guard: null, actions: ['announce(state=normal)'], target: ['normal'], reenter: false });
    const repopulated = chart.transitions.find((t) => t.event === 'REPOPULATED')!;
    expect(repopulated.target).to.equal(null);
    expect(toMermaid(chart)).to.include('rebuilding --> rebuilding : REPOPULATED / markRepopulated');
  });

  it('handles what no protocol machine uses yet: parallel regions, numeric delays, composed guards, inline actions', () => {
    const m = setup({ guards: { ready: () => true, busy: () => false }, actions: { notImplemented: () => {} } }).createMachine({
      id: 'demo',
      type: 'parallel',
      states: {
        left: { initial: 'a', states: { a: { after: { 500: 'b' } }, b: { on: { GO: { guard: and(['ready', not('busy')]), target: 'a', actions: assign({}) } } } } },
        right: { initial: 'x', states: { x: { entry: 'notImplemented', on: { STOP: 'end' } }, end: { type: 'final' } } },
      },
    });
    const chart = chartOf(m);
    const mermaid = toMermaid(chart);
    expect(mermaid).to.include('left_a --> left_b : after 500ms');
    expect(mermaid).to.include('left_b --> left_a : GO [and(ready, not(busy))]');
    expect(mermaid).to.include('state "end" as right_end');
    // Regions are parted by `--` inside a superstate named after the machine.
    expect(mermaid).to.match(/state machine_ \{\n\s+state left \{[\s\S]*\}\n\s+--\n\s+state right \{/);
    const xml = toScxml(chart);
    checkWellFormedXml(xml);
    expect(xml).to.include('<scxml xmlns="http://www.w3.org/2005/07/scxml" xmlns:m="urn:mangrove:machine-action" version="1.0" name="demo" initial="demo">');
    expect(xml).to.include('<parallel id="demo">');
    expect(xml).to.include('<send id="xstate.after.500.demo.left.a" event="xstate.after.500.demo.left.a" delay="500ms"/>');
    expect(xml).to.include('cond="and(ready, not(busy))"');
    expect(xml).to.include('<m:action name="assign"/>');
    expect(xml).to.include('<onentry><m:action name="notImplemented"/></onentry>');
    expect(chart.states.find((s) => s.id === 'right.end')?.type).to.equal('final');
  });

  it('escapes what XML and Mermaid cannot take as is', () => {
    const m = createMachine({ id: 'a&b', initial: 'one', states: { one: { on: { 'X<Y': { target: 'end', guard: 'p;q' } } }, end: { type: 'final' } } });
    const xml = toScxml(chartOf(m));
    checkWellFormedXml(xml);
    expect(xml).to.include('event="X&lt;Y"');
    expect(xml).to.include('name="a&amp;b"');
    const mermaid = toMermaid(chartOf(m));
    // `;` ends a Mermaid statement; `end` is a keyword, so its id changes and its label stays.
    expect(mermaid).to.include('one --> s_end : X<Y [p q]');
    expect(mermaid).to.include('state "end" as s_end');
  });
});

describe('mangrove machines list / export (built)', () => {
  before(function () {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
  });

  it('lists the machines, with --json as an array of names', async () => {
    const json = await mangrove(['machines', 'list', '--json']);
    expect(json.code).to.equal(0);
    expect(JSON.parse(json.stdout)).to.deep.equal(machineNames());
    const text = await mangrove(['machines', 'list']);
    for (const name of machineNames()) expect(text.stdout).to.match(new RegExp(`^${name}\\s+M\\d`, 'm'));
  });

  it('exports every machine in every format, Mermaid by default', async () => {
    for (const name of machineNames()) {
      const r = await mangrove(['machines', 'export', name]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(toMermaid(chartOf(findMachine(name).machine)));
    }
    const xml = await mangrove(['machines', 'export', 'quorum', '--format', 'scxml']);
    expect(checkWellFormedXml(xml.stdout).root).to.equal('scxml');
    const json = await mangrove(['machines', 'export', 'pan-election', '-f', 'json']);
    expect((JSON.parse(json.stdout) as Chart).machine).to.equal('pan-election');
  });

  it('refuses an unknown machine (E_NOT_FOUND, exit 1) and an unknown format (exit 2)', async () => {
    const r = await mangrove(['machines', 'export', 'nope']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(`error E_NOT_FOUND: no protocol machine is named "nope"; the machines are: ${machineNames().join(', ')}\n`);
    const f = await mangrove(['machines', 'export', 'quorum', '--format', 'dot']);
    expect(f.code).to.equal(2);
    expect(f.stderr).to.match(/^error E_BAD_ARGUMENT: .*Allowed choices are mermaid, scxml, json/);
  });

  for (const command of [['machines'], ['machines', 'list'], ['machines', 'export'], ['machines', 'watch']]) {
    it(`explains \`mangrove ${command.join(' ')} --help\``, async () => {
      const r = await mangrove([...command, '--help']);
      expect(r.code).to.equal(0);
      expect(r.stdout).to.include(`Usage: mangrove ${command.join(' ')}`);
      if (command.length > 1) expect(r.stdout).to.include('Examples:');
    });
  }
});
