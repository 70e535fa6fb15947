/**
 * The process `mangrove sim` runs a simulation in (started with a large
 * heap). Argument: the run's plan as JSON. Progress lines go to stderr; the
 * last stdout line is `{"report": …}` or `{"error": {code, message}}`.
 */
import { MangroveError } from '../../bus/errors.js';
import { TraceWriter } from '../../bus/trace/trace.js';
import { renderProgress } from '../cli/sim.js';
import { runSim, type SimPlan } from './run.js';

function main(): void {
  const plan = JSON.parse(process.argv[2] ?? '{}') as SimPlan;
  const trace = plan.trace ? new TraceWriter(plan.trace) : undefined;
  try {
    const report = runSim({
      nodes: plan.nodes,
      groups: plan.groups,
      anchors: plan.anchors,
      seed: plan.seed,
      durationS: plan.duration,
      crash: plan.crash,
      partition: plan.partition,
      loss: plan.loss,
      periodMs: plan.period,
      trace,
      progress: (p) => process.stderr.write(renderProgress(p)),
    });
    trace?.close();
    process.stdout.write(`${JSON.stringify({ report })}\n`);
  } catch (err) {
    trace?.close();
    if (!(err instanceof MangroveError)) process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    const e = err instanceof MangroveError ? err : new MangroveError('E_INTERNAL', err instanceof Error ? err.message : String(err));
    process.stdout.write(`${JSON.stringify({ error: { code: e.code, message: e.message } })}\n`);
    process.exitCode = 1;
  }
}

main();
