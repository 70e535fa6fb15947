/**
 * The browser dashboard (SPEC.md M25, M26) in headless Chromium (Debian's
 * package, driven by playwright-core) against a real 3-node cluster: the page
 * shows every node, a kill -9 turns a node's card failed (and that node's own
 * page disconnected) and the rebuild's phases reach the event log, a page
 * written through another node changes under the page watch, every protocol
 * machine's chart is drawn and follows its actors live, and each view is
 * photographed (into docs/dashboard/ with DASHBOARD_SHOTS=docs/dashboard). Every assertion reads what a user sees
 * on the page; no view may log a console error or throw. The browser and
 * every node process are stopped by pid in `after`.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceWriter } from '../../bus/trace/trace.js';
import { tracedSim } from '../helpers/traced-sim.js';
import { chromium, type Browser, type BrowserServer, type Page } from 'playwright-core';
import type { NodeStatus } from '../../actors/status.js';
import { PAGE_BYTES } from '../../machines/memory/address.js';
import { connect, type MangroveClient } from '../../runtime/client/pages.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { until } from '../helpers/until.js';

const CHROMIUM = '/usr/bin/chromium';
/** Where the screenshots go: a temporary folder, or the README's (DASHBOARD_SHOTS=docs/dashboard npm test). */
const SHOTS = process.env.DASHBOARD_SHOTS ?? join(tmpdir(), 'mangrove-dashboard-shots');
const PERIOD = 250;
/** The feed comes once a second at most; a failure takes a few heartbeats to be declared. */
const SEE_MS = 20_000;

interface Chart {
  machine: string;
  states: unknown[];
}

describe('the dashboard in a browser', function () {
  this.timeout(240_000);
  let cluster: ProcessCluster | undefined;
  let server: BrowserServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let client: MangroveClient | undefined;
  /** Console errors and uncaught exceptions of the page, as they come. */
  const errors: string[] = [];
  let statuses: NodeStatus[];
  const SERVING = 0;
  let victim: number;
  let other: number;
  let base: string;

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`the dashboard specs need Debian's chromium at ${CHROMIUM}: run \`apt-get install chromium\` (as root)`);
    cluster = await ProcessCluster.start({ nodes: 3, anchors: 3, periodMs: PERIOD, http: true });
    const c = cluster;
    await until('the cluster to form', () => c.converged(), { timeoutMs: 30_000, pollMs: 200 }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${c.died().join('\n') || `node-0 log:\n${c.log(0).slice(-3000)}`}`);
    });
    statuses = (await cluster.statuses()).map((s, i) => {
      if (!s) throw new Error(`node ${i} does not answer`);
      return s;
    });
    base = `http://127.0.0.1:${statuses[SERVING]!.http}`;
    // Killed: neither the node serving the page nor the PAN (its failure would also move the PAN).
    const pan = statuses[SERVING]!.pan;
    victim = [1, 2].find((i) => statuses[i]!.self !== pan)!;
    other = [1, 2].find((i) => i !== victim)!;
    server = await chromium.launchServer({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
    });
    browser = await chromium.connect(server.wsEndpoint());
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    mkdirSync(SHOTS, { recursive: true });
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    await browser?.close().catch(() => undefined);
    if (server) {
      const pid = server.process().pid;
      await Promise.race([server.close(), new Promise((r) => setTimeout(r, 5000))]);
      if (pid !== undefined && server.process().exitCode === null && server.process().signalCode === null) process.kill(pid, 'SIGKILL');
    }
    await cluster?.stop();
  });

  const idOf = (i: number) => statuses[i]!.self;
  const card = (i: number) => `[data-node="${idOf(i)}"]`;
  const view = async (name: string) => {
    await page.click(`nav a[data-view="${name}"]`);
    await page.waitForSelector(`#view-${name}:not([hidden])`);
  };
  /** A full-page picture from the top (the header is sticky: scrolled, it would sit mid-picture). */
  const shoot = async (name: string) => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  };
  const logLines = () => page.$$eval('#event-log li', (lis) => lis.map((li) => li.textContent ?? ''));

  it('loads with no console error and shows every node of the cluster alive', async () => {
    await page.goto(`${base}/`);
    await page.waitForFunction(() => document.querySelectorAll('[data-node][data-alive="true"]').length === 3, null, { timeout: SEE_MS });
    const shown = await page.$$eval('[data-node]', (cards) => cards.map((c) => (c as HTMLElement).dataset.node));
    expect(shown).to.have.members(statuses.map((s) => s.self));
    expect(await page.getAttribute('#hdr-conn', 'data-connected')).to.equal('true');
    expect(await page.getAttribute('#hdr-quorum', 'data-quorum')).to.equal('true');
    expect(await page.textContent('#hdr-node')).to.contain(idOf(SERVING).slice(0, 8));
    // Every observer sees every node alive in the liveness matrix.
    expect(await page.$$eval('td[data-alive="true"]', (tds) => tds.length)).to.equal(9);
    expect(await page.getAttribute('#rebuild-panel', 'data-rebuild-phase')).to.equal('none');
    expect(errors).to.deep.equal([]);
  });

  it('turns a node killed with -9 failed, and logs the rebuild that follows', async () => {
    // The victim's own dashboard, open in another tab: it says it is disconnected (its console errors are the browser's, expected).
    const own = await browser!.newPage({ viewport: { width: 1200, height: 800 } });
    await own.goto(`http://127.0.0.1:${statuses[victim]!.http}/`);
    await own.waitForSelector('#hdr-conn[data-connected="true"]', { timeout: SEE_MS });
    await cluster!.kill(victim);
    await own.waitForSelector('#hdr-conn[data-connected="false"]', { timeout: SEE_MS });
    expect(await own.textContent('#hdr-conn')).to.contain('disconnected');
    expect(await own.isVisible('#offline')).to.equal(true);
    await own.close();

    await page.waitForSelector(`${card(victim)}[data-alive="false"]`, { timeout: SEE_MS });
    await page.waitForSelector(`td[data-observer="${idOf(SERVING)}"][data-target="${idOf(victim)}"][data-alive="false"]`, { timeout: SEE_MS });
    for (const i of [SERVING, other]) expect(await page.getAttribute(card(i), 'data-alive'), `node ${i} stays alive`).to.equal('true');
    await until('a rebuild phase in the event log', async () => (await logLines()).some((l) => l.includes('rebuild phase:')), { timeoutMs: SEE_MS, pollMs: 200 });
    await until('the rebuild to end on the page', async () => (await page.getAttribute('#rebuild-panel', 'data-rebuild-phase')) === 'none', { timeoutMs: SEE_MS, pollMs: 200 });
    const lines = await logLines();
    expect(lines.some((l) => l.includes(`node ${idOf(victim).slice(0, 8)} failed`)), lines.join('\n')).to.equal(true);
    const phases = lines.filter((l) => l.includes('rebuild phase:'));
    expect(phases.some((l) => /rebuild phase: (quiescing|notified|quiescent)/.test(l)), phases.join('\n')).to.equal(true);
    expect(phases.some((l) => /rebuild phase: (done|resumed)/.test(l)), phases.join('\n')).to.equal(true);
  });

  it('shows a page written through another node change under the page watch', async () => {
    const c = cluster!;
    await until('the survivors to settle', () => c.converged(), { timeoutMs: 30_000, pollMs: 200 });
    client = await connect(c.endpoints[other]!);
    const addr = await client.reserve(1);
    await client.alloc(addr, 1);
    const first = pageOf('written through another node, first');
    const v1 = (await client.write(addr, first))[0]!;

    await view('store');
    await page.fill('#page-addr', `0x${addr.toString(16)}`);
    await page.click('#page-form button[type="submit"]');
    await page.waitForFunction((hex) => document.getElementById('page-head')?.textContent === hex, hexHead(first), { timeout: SEE_MS });
    const seen1 = Number(await page.getAttribute('#page-watch', 'data-version'));
    expect(seen1).to.equal(v1);
    expect(await page.textContent('#page-ascii')).to.contain('written through another node, first');

    const second = pageOf('and then again, second');
    const v2 = (await client.write(addr, second))[0]!;
    expect(v2).to.be.greaterThan(v1);
    await page.waitForFunction((hex) => document.getElementById('page-head')?.textContent === hex, hexHead(second), { timeout: SEE_MS });
    const seen2 = Number(await page.getAttribute('#page-watch', 'data-version'));
    expect(seen2).to.be.greaterThan(seen1);
    expect(await page.textContent('#page-note')).to.match(/Changed at .*version \d+ → \d+/);
  });

  it("browses an arena's directory from its root to the reservations, and a reservation clicked is watched", async () => {
    const c = cluster!;
    // Enough reservations that the root splits: the tree has inner pages and several leaves.
    const first = await client!.reserve(1);
    for (let i = 0; i < 299; i++) await client!.reserve(1 + (i % 4));
    await client!.alloc(first, 1, { copies: 2 });
    const arena = Number(first >> 64n);
    const firstHex = `0x${first.toString(16).padStart(32, '0')}`;
    const home = (await c.statuses())[other]!.self;

    await view('store');
    await page.click(`#dir-arenas [data-arena="${arena}"]`);
    const summary = await until('the root of the arena, read again once it changed', async () => {
      const text = (await page.textContent('#dir-summary')) ?? '';
      const n = Number(/^([\d,]+) reservations/.exec(text)?.[1]?.replace(/,/g, '') ?? 0);
      return n >= 300 && (await page.$('#dir-tree > ul > li[data-kind="inner"]')) ? text : undefined;
    }, { timeoutMs: SEE_MS, pollMs: 250 });
    expect(summary).to.match(/in \d+ directory pages, \d levels deep/);
    expect(await page.getAttribute('#dir-summary .mono', 'title')).to.equal(home);

    // The root opens on its children; the first (lowest addresses) holds the first reservation.
    const firstChild = '#dir-tree > ul > li > ul > li:first-child';
    await page.waitForSelector(`${firstChild} > .dir-row`, { timeout: SEE_MS });
    expect(await page.getAttribute(firstChild, 'data-kind'), 'a few hundred reservations: a root over leaves').to.equal('leaf');
    await page.click(`${firstChild} > .dir-row`);
    const row = `#dir-tree tr[data-start="${firstHex}"]`;
    await page.waitForSelector(row, { timeout: SEE_MS });
    expect(await page.getAttribute(row, 'data-state')).to.equal('materialized');
    expect(((await page.textContent(`${row} td:last-child`)) ?? '').split(',').length, 'two core holders').to.equal(2);
    expect(await page.$$eval(`${firstChild} tr[data-start]`, (rows) => rows.length)).to.be.greaterThan(10);
    await shoot('store-directory');

    await page.click(`${row} a`);
    await page.waitForFunction((hex) => document.getElementById('page-watch')?.dataset.addr === hex, firstHex, { timeout: SEE_MS });
  });

  it("draws every machine's chart", async () => {
    const charts = ((await (await fetch(`${base}/dashboard/charts`)).json()) as { machines: Chart[] }).machines;
    expect(charts.length).to.be.greaterThan(0);
    await view('machines');
    for (const chart of charts) {
      await page.click(`[data-pick-machine="${chart.machine}"]`);
      const box = await page.waitForSelector(`[data-machine="${chart.machine}"][data-rendered="true"]`, { timeout: 10_000 });
      const drawn = Number(await box.getAttribute('data-nodes'));
      expect(drawn, chart.machine).to.be.at.least(1);
      expect(drawn, `${chart.machine}: a node per state`).to.equal(chart.states.length);
    }
    // A machine every node runs: its actor shows, in its current state.
    await page.click('[data-pick-machine="quorum"]');
    await page.waitForSelector('[data-machine="quorum"][data-rendered="true"]');
    await page.waitForSelector('#machine-actors tr[data-actor]', { timeout: SEE_MS });
    expect(await page.textContent('#machine-actors')).to.contain('quorate');
  });

  it('follows a machine as it changes state', async () => {
    // A page homed on the serving node, written through the other one: the home's page-home actor moves.
    const home = await connect(cluster!.endpoints[SERVING]!);
    try {
      const addr = await home.reserve(1);
      await home.alloc(addr, 1);
      await home.write(addr, pageOf('homed here'));
      await page.click('[data-pick-machine="page-home"]');
      await page.waitForSelector('[data-machine="page-home"][data-rendered="true"]');
      await page.waitForSelector('#machine-actors tr[data-actor]', { timeout: SEE_MS });
      const before = await page.$$eval('#machine-recent li', (lis) => lis.map((li) => li.textContent ?? ''));
      await client!.write(addr, pageOf('taken over by the other node'));
      const after = await until('a page-home transition on the page', async () => {
        const now = await page.$$eval('#machine-recent li', (lis) => lis.map((li) => li.textContent ?? ''));
        return now.length > 0 && now[0] !== before[0] ? now : undefined;
      }, { timeoutMs: SEE_MS, pollMs: 100 });
      expect(after[0]).to.match(/(idle|choosing|forwarding|releasing|\(start\)) → (idle|choosing|forwarding|releasing|\(stop\))/);
      // The highlight follows: the chart lights the states the actors are in now.
      const states = await page.$$eval('#machine-actors tr[data-actor] td:nth-child(2)', (tds) => [...new Set(tds.map((td) => td.textContent ?? ''))].sort().join(','));
      await page.waitForFunction((lit) => document.querySelector('[data-machine="page-home"]')?.getAttribute('data-active') === lit, states, { timeout: SEE_MS });
    } finally {
      await home.close();
    }
  });

  it('photographs each view', async () => {
    // Something to browse in Files, written through the other node.
    await client!.fs.mkdir('/projects/alpha', { recursive: true });
    await client!.fs.mkdir('/logs');
    await client!.fs.writeFile('/projects/alpha/notes.txt', 'pages are homed by arena\n');
    await client!.fs.writeFile('/projects/alpha/plan.md', '# plan\n'.repeat(200));
    await client!.fs.writeFile('/README', 'mangrove\n');

    await view('cluster');
    await page.waitForSelector(`${card(victim)}[data-alive="false"]`);
    await shoot('cluster');

    await view('store');
    await page.waitForSelector('#usage table');
    await page.waitForSelector('#page-watch[data-version]');
    await shoot('store');

    await view('files');
    await page.click('[data-path="/projects"] > .entry-row');
    await page.click('[data-path="/projects/alpha"] > .entry-row');
    await page.waitForSelector('[data-path="/projects/alpha/notes.txt"]', { timeout: SEE_MS });
    await page.click('[data-path="/projects/alpha/notes.txt"] > .entry-row');
    expect(await page.textContent('#file-detail')).to.contain('default:/projects/alpha/notes.txt');
    await shoot('files');

    await view('machines');
    await page.click('[data-pick-machine="rebuild-participant"]');
    await page.waitForSelector('[data-machine="rebuild-participant"][data-rendered="true"]');
    await page.waitForSelector('#machine-actors tr[data-actor]', { timeout: SEE_MS });
    await shoot('machines');

    await view('traffic');
    await page.waitForSelector('#traffic-kinds .chart-card polyline', { timeout: SEE_MS });
    expect(await page.$$eval('#traffic-totals polyline', (p) => p.length)).to.be.at.least(1);
    await shoot('traffic');
    for (const name of ['cluster', 'store', 'files', 'machines', 'traffic']) expect(existsSync(`${SHOTS}/${name}.png`), name).to.equal(true);
  });

  it("charts this node's request rates and latencies on the Traffic view", async () => {
    // Pages written through the node serving the page: its client.* requests are the ones it times.
    const near = await connect(cluster!.endpoints[SERVING]!);
    try {
      await view('traffic');
      const latency = '#traffic-request-latency [data-chart="request-latency"]';
      // A line needs requests in two intervals in a row (the feed comes once a second): write until one is drawn.
      let i = 0;
      await until('a latency line on the Traffic view', async () => {
        const addr = await near.reserve(1);
        await near.alloc(addr, 1);
        await near.write(addr, pageOf(`timed request ${i++}`));
        return (await page.$(`${latency} polyline[data-series$=" mean"]`)) !== null;
      }, { timeoutMs: SEE_MS, pollMs: 100 });
      const series = await page.$$eval(`${latency} [data-series]`, (els) => [...new Set(els.map((e) => e.getAttribute('data-series')))]);
      expect(series.some((s) => /^client\.\w+ mean$/.test(s ?? '')), series.join(', ')).to.equal(true);
      expect(series.some((s) => /^client\.\w+ p99$/.test(s ?? '')), series.join(', ')).to.equal(true);
      // The y axis is in milliseconds (or seconds), every label with its unit.
      const ticks = await page.$$eval(`${latency} text.axis`, (ts) => ts.map((t) => t.textContent ?? ''));
      expect(ticks.filter((t) => /\d (ms|s)$/.test(t)).length, ticks.join(' | ')).to.be.at.least(2);
      expect(await page.$$eval('#traffic-request-rates [data-chart="request-rates"] polyline[data-series^="client."]', (p) => p.length)).to.be.at.least(1);
      await shoot('traffic-requests');
    } finally {
      await near.close();
    }
  });

  it('has shown no console error and thrown nothing in any view', () => {
    expect(errors).to.deep.equal([]);
  });

  it("shows another node's machines, asked over the bus through the node serving the page", async () => {
    // The heartbeat machine the other node runs (a member, or a monitor once promoted), as this node's route answers it.
    const theirs = (await (await fetch(`${base}/dashboard/machines?node=${idOf(other)}`)).json()) as { node: string; actors: { machine: string; state: string }[] };
    expect(theirs.node).to.equal(idOf(other));
    const heartbeat = theirs.actors.find((a) => a.machine.startsWith('heartbeat-'));
    expect(heartbeat, JSON.stringify(theirs.actors)).to.not.equal(undefined);
    const asked: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/dashboard/machines?')) asked.push(r.url());
    });
    await view('machines');
    await page.click(`[data-pick-machine="${heartbeat!.machine}"]`);
    await page.waitForSelector(`[data-machine="${heartbeat!.machine}"][data-rendered="true"]`);
    await page.selectOption('#machine-node', idOf(other));
    const chart = `#machine-chart[data-node="${idOf(other)}"]`;
    await page.waitForSelector(chart, { timeout: SEE_MS });
    // The chart lights the state the other node's actor is in, and the table shows that actor.
    await page.waitForFunction((sel) => (document.querySelector(sel)?.getAttribute('data-active') ?? '') !== '', chart, { timeout: SEE_MS });
    const lit = (await page.getAttribute(chart, 'data-active'))!.split(',');
    const rows = await page.$$eval('#machine-actors tr[data-actor] td:nth-child(2)', (tds) => tds.map((td) => (td.textContent ?? '').split(', ')).flat());
    expect(rows.length).to.be.at.least(1);
    expect([...new Set(rows)].sort()).to.deep.equal([...lit].sort());
    expect(await page.textContent('#machine-notice [data-source="bus"]')).to.contain(idOf(other).slice(0, 8));
    // Asked again once a period, resuming after the newest transition seen.
    await until('a second ask, resuming', () => asked.some((u) => /&after=\d+$/.test(u)), { timeoutMs: SEE_MS, pollMs: 100 });
    await shoot('machines-other-node');
    // Back to this node: its own stream again, and no more asks of the other.
    await page.selectOption('#machine-node', '');
    await page.waitForSelector(`#machine-chart[data-node="${idOf(SERVING)}"]`, { timeout: SEE_MS });
    const sofar = asked.length;
    // The sentinel: two feed messages later (a period each, the polls' period too), no ask has been made.
    const updated = async () => page.textContent('#hdr-updated');
    for (let i = 0; i < 2; i++) {
      const was = await updated();
      await until('the next feed message', async () => (await updated()) !== was, { timeoutMs: SEE_MS, pollMs: 100 });
    }
    expect(asked.length).to.equal(sofar);
    expect(errors).to.deep.equal([]);
  });

  it('draws a recorded trace as a sequence diagram, with what trace check finds marked', async () => {
    // A simulated run, recorded as a node records, with a fault planted: the monitor's receipts of
    // member pulses cut from 1.5 s on, while its bitmaps still count the members alive.
    const run = await tracedSim({ seed: 3, nodes: 3, periodMs: 100 }, (c) => void c.run(3000));
    const dir = mkdtempSync(join(tmpdir(), 'mangrove-e2e-trace-'));
    try {
      const file = join(dir, 'planted.trace');
      const w = new TraceWriter(file);
      for (const r of run.records) if (!(r.env.kind === 'hb.member_pulse' && r.dir === 'recv' && r.t > run.startAt + 1500)) w.record(r);
      w.close();
      await view('traces');
      await page.setInputFiles('#trace-file', file);
      await page.waitForSelector('#view-traces[data-state="loaded"]', { timeout: SEE_MS });
      expect(Number(await page.getAttribute('#view-traces', 'data-messages'))).to.be.above(100);
      expect(Number(await page.getAttribute('#view-traces', 'data-violations'))).to.be.at.least(1);
      expect(await page.$$eval('.trace-violation', (li) => [...new Set(li.map((e) => e.getAttribute('data-rule')))])).to.deep.equal(['hb.alive-within-deadlines']);
      expect(Number(await page.getAttribute('svg.sequence', 'data-rows'))).to.be.above(50);
      expect(await page.$$eval('svg.sequence .violation-mark', (m) => m.length)).to.be.at.least(1);
      await page.click('.trace-violation');
      await shoot('traces');
      // What is not a trace is refused, and said so on the page (the browser logs the 400 itself).
      const logged = errors.length;
      const junk = join(dir, 'junk.trace');
      writeFileSync(junk, 'not a trace at all');
      await page.setInputFiles('#trace-file', junk);
      await page.waitForSelector('#view-traces[data-state="failed"]', { timeout: SEE_MS });
      expect(await page.textContent('#trace-summary')).to.match(/E_BAD_ARGUMENT/);
      expect(errors.slice(logged).filter((e) => !/status of 400/.test(e))).to.deep.equal([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A page of bytes starting with `text`. */
  function pageOf(text: string): Uint8Array {
    const data = new Uint8Array(PAGE_BYTES);
    data.set(new TextEncoder().encode(text));
    data.fill(0xa5, 48);
    return data;
  }

  /** The first 64 bytes as the page shows them. */
  function hexHead(data: Uint8Array): string {
    return Buffer.from(data.subarray(0, 64)).toString('hex');
  }

});
