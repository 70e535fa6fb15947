/**
 * What people read: a node's status (`mangrove status`) and the live view of
 * a local cluster (`mangrove local`). Pure functions from data to text, so a
 * spec can check exactly what a user would see.
 */
import type { NodeStatus, NodeView } from '../../actors/status.js';
import { formatShortId, levelsFor } from '../../machines/membership/identity.js';

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

function yesNo(b: boolean): string {
  return b ? 'yes' : 'no';
}

function levelsOf(nodes: readonly Pick<NodeView, 'group'>[]): number {
  return levelsFor(Math.max(0, ...nodes.map((n) => n.group)));
}

/** Summary lines, then one row per node of the node database. */
const MIB = 1024 * 1024;

/** The memory engine on one line: RAM cache use, disk pages, pages this node is home to, copies held. */
function pagesLine(s: NodeStatus): string {
  const p = s.pages;
  if (!p) return 'none';
  const ram = `RAM ${(p.ram.usedBytes / MIB).toFixed(1)} of ${(p.ram.budgetBytes / MIB).toFixed(1)} MiB (${p.ram.pages} pages, ${p.ram.dirtyPages} dirty)`;
  const disk = `disk ${p.disk.pages} of ${p.disk.pagesMax} pages`;
  const copies = `copies: ${p.copies.write} writable, ${p.copies.read} read-only`;
  return `${ram}, ${disk}, home to ${p.homePages}; ${copies}`;
}

/** The rebuild (M14) as this node sees it: its state, the network's, the last round, what it coordinates. */
function recoveryLine(s: NodeStatus): string {
  const r = s.recovery;
  if (!r) return 'none';
  const round = r.completed === 0 ? 'no rebuild yet' : `last rebuild round ${r.completed}`;
  const coordinating = r.coordinating ? `; coordinating round ${r.coordinating.round}, ${r.coordinating.phase}${r.coordinating.waiting.length > 0 ? ` (waiting for ${r.coordinating.waiting.length})` : ''}` : '';
  const dropped = Object.values(r.dropped).reduce((a, b) => a + b, 0);
  return `state ${r.state}, network ${r.network}, ${round}${coordinating}${dropped > 0 ? `; ${dropped} bad rebuild message${dropped === 1 ? '' : 's'} dropped` : ''}`;
}

/** Whether only known keys get in (docs/security.md), and what roles were refused. */
function securityLine(sec: NonNullable<NodeStatus['security']>): string {
  if (!sec.secure) return 'INSECURE: no keys ("insecure": true), every process that reaches the port gets in';
  return `secure: only the keys of its config and node database get in; ${sec.forbidden} request${sec.forbidden === 1 ? '' : 's'} forbidden for their role`;
}

/** Re-replication (M15) of what this node serves: what is left, what was done. */
function replicationLine(s: NodeStatus): string {
  const r = s.replication;
  if (!r) return 'none';
  const left = r.pagesUnderReplicated + r.arenasUnderReplicated === 0 ? 'nothing under-replicated' : `${r.pagesUnderReplicated} page${r.pagesUnderReplicated === 1 ? '' : 's'} under-replicated${r.partial ? ' or more' : ''}, ${r.arenasUnderReplicated} directory short of replicas`;
  return `${left}; ${r.reReplicatedPages} re-replicated, ${r.collectedCopies} stale copies collected`;
}

export function renderStatus(s: NodeStatus): string {
  const alive = s.nodes.filter((n) => n.alive).length;
  const failed = s.nodes.length - alive;
  const votes = s.nodes.find((n) => n.id === s.self)?.votes;
  const anchor = s.anchor ? `yes${votes === undefined ? '' : ` (${votes} vote${votes === 1 ? '' : 's'})`}` : 'no';
  const rejected = s.rejected === 0 ? '0' : `${s.rejected} (${reasons(s.rejectedByReason)})`;
  const dropped = s.faults.dropped.length === 0 ? 'none' : s.faults.dropped.join(', ');
  const summary = [
    ['node', `${s.self}  (epoch ${s.epoch}, pid ${s.pid}, software ${s.software})`],
    ['endpoint', `${s.endpoint}  anchor ${anchor}  group ${s.group}`],
    ['phase', `${s.phase}  state ${s.state}`],
    ['quorum', s.quorum ? 'yes' : 'NO'],
    ['monitor', s.monitor ?? 'none'],
    ['pan', `${s.pan ?? 'none'}${s.panTerm === null || s.panTerm === undefined ? '' : `  (this node, term ${s.panTerm})`}`],
    ['node db', `version ${s.version}, ${s.nodes.length} node${s.nodes.length === 1 ? '' : 's'}: ${alive} alive, ${failed} failed`],
    ['messages', `sent ${s.messages.sent}${s.messages.wireMessages === undefined ? '' : ` (in ${s.messages.wireMessages} wire messages)`}, received ${s.messages.received}, unsent ${s.messages.unsent}, filtered ${s.messages.filtered}, rejected ${rejected}`],
    ['faults', `injection ${s.faults.enabled ? 'on' : 'off'}, dropping ${dropped}`],
    ...(s.security === undefined ? [] : [['security', securityLine(s.security)]]),
    ['codec', s.codec.native ? 'native' : 'JavaScript (native decoder not loaded)'],
    ['pages', pagesLine(s)],
    ['recovery', recoveryLine(s)],
    ['copies', replicationLine(s)],
    ...(s.fs === undefined ? [] : [['files', filesLine(s.fs)], ...s.fs.mounts.map((m) => ['mount', mountLine(m)])]),
  ];
  const width = Math.max(...summary.map(([k]) => k.length));
  const head = summary.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
  if (s.nodes.length === 0) return `${head}\n\n(no node database yet: this node is still forming the cluster)`;

  const levels = levelsOf(s.nodes);
  const rows = [...s.nodes]
    .sort((a, b) => a.shortId - b.shortId)
    .map((n) => [
      formatShortId(n.shortId, levels),
      n.id,
      n.endpoint,
      n.pid === null ? '-' : String(n.pid),
      n.anchor ? `yes (${n.votes})` : 'no',
      String(n.group),
      n.role,
      n.state ?? '-',
      n.alive ? 'alive' : 'FAILED',
      notes(s, n.id),
    ]);
  return `${head}\n\n${table(['SHORT', 'ID', 'ENDPOINT', 'PID', 'ANCHOR', 'GROUP', 'ROLE', 'STATE', 'ALIVE', 'NOTE'], rows)}`;
}

function notes(s: NodeStatus, id: string): string {
  const out: string[] = [];
  if (id === s.self) out.push('this node');
  if (id === s.monitor) out.push('its monitor');
  if (id === s.pan) out.push('pan');
  if (s.faults.dropped.includes(id)) out.push('dropped');
  return out.join(', ');
}

function reasons(byReason: Record<string, number>): string {
  return Object.entries(byReason)
    .filter(([, n]) => n > 0)
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
}

/** One node of `mangrove local`, as the launcher knows it. */
export interface LocalNode {
  index: number;
  /** The child process; null before it was started. */
  pid: number | null;
  /** Set once the process has ended. */
  exit?: { code: number | null; signal: string | null };
  /** The node's last answer to `client.status`. */
  status?: NodeStatus;
  /** Why the last `client.status` failed, when it did. */
  error?: string;
}

export interface LocalView {
  dir: string;
  nodes: readonly LocalNode[];
  /** Wall-clock time of this view (ms since 1970). */
  atMs: number;
}

/**
 * The live view: one row per node with what that node says of itself, plus
 * how many of the answering nodes see it alive. Monitors and PANs are
 * shown by local index (#2) because that is what the rest of the view uses.
 */
export function renderLocal(view: LocalView): string {
  const answering = view.nodes.filter((n) => n.status).map((n) => n.status!);
  const indexOf = new Map(view.nodes.filter((n) => n.status).map((n) => [n.status!.self, n.index]));
  const ref = (id: string | null): string => {
    if (id === null) return '-';
    const i = indexOf.get(id);
    return i === undefined ? id.slice(0, 12) : `#${i}`;
  };
  const allViews = answering.flatMap((s) => s.nodes);
  const levels = levelsOf(allViews);

  const rows = view.nodes.map((n) => {
    const s = n.status;
    if (!s) {
      const why = n.exit ? `exited (${n.exit.signal ?? `code ${n.exit.code}`})` : n.pid === null ? 'not started' : 'no answer';
      return [`#${n.index}`, '-', '-', n.pid === null ? '-' : String(n.pid), '-', '-', '-', '-', '-', why, '-', '-'];
    }
    const own = s.nodes.find((x) => x.id === s.self);
    const seenAlive = answering.filter((o) => o.nodes.some((x) => x.id === s.self && x.alive)).length;
    const role = `${s.anchor ? 'anchor/' : ''}${own?.role ?? 'member'}`;
    const state = s.phase === 'forming' ? 'forming' : s.state;
    const left = s.replication ? s.replication.pagesUnderReplicated + s.replication.arenasUnderReplicated : 0;
    return [
      `#${n.index}`,
      own ? formatShortId(own.shortId, levels) : '-',
      s.self,
      String(s.pid),
      role,
      `${seenAlive}/${answering.length}`,
      yesNo(s.quorum),
      ref(s.monitor),
      ref(s.pan),
      n.exit ? `${state} (exited)` : state,
      left === 0 ? '-' : String(left),
      s.replication ? String(s.replication.reReplicatedPages) : '-',
    ];
  });

  const quorate = answering.filter((s) => s.quorum).length;
  const versions = [...new Set(answering.map((s) => s.version))].sort((a, b) => a - b);
  const time = new Date(view.atMs).toISOString().slice(11, 19);
  const header = [
    `mangrove local: ${view.nodes.length} node${view.nodes.length === 1 ? '' : 's'} in ${view.dir}   ${time} UTC`,
    `answering ${answering.length}/${view.nodes.length}, quorum at ${quorate}/${answering.length}, node db version ${versions.length === 0 ? '-' : versions.join(' / ')}`,
  ].join('\n');
  const body = table(['#', 'SHORT', 'ID', 'PID', 'ROLE', 'ALIVE', 'QUORUM', 'MONITOR', 'PAN', 'STATE', 'UNDER', 'COPIED'], rows);
  const legend = [
    'ALIVE: how many answering nodes see it alive. STATE: normal, or notified, quiescent, rebuilding while the cluster rebuilds after a failure (M14).',
    'UNDER: pages and directories it serves that lack a copy since a failure; COPIED: pages it had copied to new holders (M15). Ctrl-C stops every node.',
  ].join('\n');
  return `${header}\n\n${body}\n\n${legend}`;
}

function filesLine(fs: NonNullable<NodeStatus['fs']>): string {
  return `${fs.calls} calls (${fs.failed} failed), ${fs.handles} handles open, ${fs.recoveries} half-done updates recovered, ${fs.mounts.length} mount${fs.mounts.length === 1 ? '' : 's'}`;
}

/** One POSIX mount using this node, from its last report. */
function mountLine(m: NonNullable<NodeStatus['fs']>['mounts'][number]): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${m.fileset} on ${m.host}:${m.dir} (pid ${m.pid}): ${m.ops} ops, ${m.errors} errors, read ${mib(m.bytesRead)}, written ${mib(m.bytesWritten)}, p50 ${m.latencyMsP50.toFixed(1)} ms, p99 ${m.latencyMsP99.toFixed(1)} ms${m.failovers > 0 ? `, ${m.failovers} failovers` : ''}`;
}
