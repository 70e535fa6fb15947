/**
 * The applets of repopulation (M14; actors/recovery/repopulation.ts): a
 * node registers its copies with a page's home (`peer.register`), and a home
 * tells a holder its copy is older than another (`peer.demote`). Both belong
 * to one rebuild round; a call of another round is refused (E_STALE) and
 * changes nothing.
 */
import { MangroveError } from '../../../bus/errors.js';
import type { PeerCall } from '../../../bus/messages/page.js';
import { addressFromKey } from '../../../machines/memory/address.js';
import type { Repopulation } from '../../recovery/repopulation.js';
import type { EngineParts } from '../engine-parts.js';

type Call<O extends PeerCall['op']> = Extract<PeerCall, { op: O }>;

export function registerRecoveryApplets(engine: EngineParts): void {
  engine.scheduler.register('peer.register', {
    applet: async (input, ctx) => {
      const req = input as Call<'register'>;
      const copies = req.pages.map((p) => ({ addr: addressFromKey(p.addr), version: p.version, owner: p.owner, dirty: p.dirty }));
      return { verdicts: await roundOf(engine, req.round).register(ctx.origin, copies) };
    },
  });
  engine.scheduler.register('peer.demote', {
    applet: async (input) => {
      const req = input as Call<'demote'>;
      roundOf(engine, req.round).demote(addressFromKey(req.addr), req.as);
      return {};
    },
  });
}

function roundOf(engine: EngineParts, round: number): Repopulation {
  const repopulation = engine.repopulation();
  if (!repopulation || repopulation.round !== round) {
    throw new MangroveError('E_STALE', `repopulation of round ${round} is not under way here (${repopulation ? `round ${repopulation.round} is` : 'none is'})`);
  }
  return repopulation;
}
