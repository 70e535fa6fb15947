/**
 * The names replay's violations carry (replay.ts), apart from the replay
 * itself so that `trace check --help` can list them without loading a node.
 */
export const REPLAY_RULES = ['replay.start', 'replay.sends', 'replay.timer', 'replay.reply'] as const;

/** One line each, for `trace check --help`. */
export const REPLAY_RULE_HELP: Record<(typeof REPLAY_RULES)[number], string> = {
  'replay.start': 'a node\'s start record holds what it takes to rebuild the node',
  'replay.sends': 'after each input, the node sent what its replayed machines send (kind, to, body)',
  'replay.timer': 'every timer the node fired is one its replayed machines set',
  'replay.reply': 'every reply to a client is one the replayed node makes',
};

