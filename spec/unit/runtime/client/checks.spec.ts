/**
 * The client's hot calls build their wire op without walking the schema
 * (checks.ts `hotOp`): it must accept only what the schema accepts and build
 * what `wireOp` builds, or a read could go out that the node's codec drops.
 */
import { expect } from 'chai';
import { PAGES_PER_REQUEST_MAX } from '../../../../bus/messages/page.js';
import { MAX_ADDRESS, PAGE_BYTES } from '../../../../machines/memory/address.js';
import { hotOp, wireOp } from '../../../../runtime/client/checks.js';
import { SeededRandom } from '../../../../runtime/world/random.js';

const SEED = 1106;
const CASES = 5000;

/** An address near an edge of what is valid: page bases, off-page, negative, past the space, not a bigint. */
function anAddress(r: SeededRandom): unknown {
  const page = BigInt(PAGE_BYTES);
  const lastPage = MAX_ADDRESS - page + 1n;
  const picks: (() => unknown)[] = [
    () => BigInt(r.int(1 << 20)) * page,
    () => BigInt(r.int(1 << 20)) * page + BigInt(1 + r.int(PAGE_BYTES - 1)),
    () => lastPage - BigInt(r.int(PAGES_PER_REQUEST_MAX + 2)) * page,
    () => -BigInt(r.int(3) + 1) * page,
    () => MAX_ADDRESS + 1n,
    () => r.int(1 << 20) * PAGE_BYTES,
    () => `0x${r.int(1 << 20).toString(16)}000`,
  ];
  return picks[r.int(picks.length)]();
}

function aCount(r: SeededRandom): unknown {
  const picks: (() => unknown)[] = [
    () => 1 + r.int(PAGES_PER_REQUEST_MAX),
    () => PAGES_PER_REQUEST_MAX + 1 + r.int(3),
    () => -r.int(3),
    () => 1.5,
    () => '1',
    () => Number.NaN,
  ];
  return picks[r.int(picks.length)]();
}

function someData(r: SeededRandom): unknown {
  const picks: (() => unknown)[] = [
    () => new Uint8Array(PAGE_BYTES * (1 + r.int(4))),
    () => new Uint8Array(PAGE_BYTES * (1 + r.int(4)) + 1 + r.int(100)),
    () => new Uint8Array(PAGE_BYTES * (PAGES_PER_REQUEST_MAX + 1)),
    () => new Uint8Array(0),
    () => [1, 2, 3],
  ];
  return picks[r.int(picks.length)]();
}

/** wireOp's op, or undefined where it refuses. */
function viaSchema(op: 'read' | 'write', addr: unknown, arg: unknown): unknown {
  try {
    return op === 'read' ? wireOp({ op, addr, pages: arg }) : wireOp({ op, addr, data: arg });
  } catch {
    return undefined;
  }
}

describe('hotOp, the client\'s read and write without the schema walk', () => {
  for (const op of ['read', 'write'] as const) {
    it(`${op}: accepts only what wireOp accepts, and builds the same op (seed ${SEED}, ${CASES} cases)`, () => {
      const r = new SeededRandom(SEED);
      let hot = 0;
      for (let i = 0; i < CASES; i++) {
        const addr = anAddress(r);
        const arg = op === 'read' ? aCount(r) : someData(r);
        const fast = hotOp(op, addr, arg);
        const full = viaSchema(op, addr, arg);
        const what = `case ${i} (seed ${SEED}): ${op} at ${String(addr)} with ${arg instanceof Uint8Array ? `${arg.byteLength} bytes` : String(arg)}`;
        if (fast === undefined) continue;
        hot++;
        expect(full, `${what}: wireOp refuses what hotOp passed`).to.not.equal(undefined);
        expect(fast, what).to.deep.equal(full);
      }
      // Both kinds of answer were met: the cases reach what the fast path takes.
      expect(hot, 'cases hotOp took').to.be.within(CASES / 50, CASES - CASES / 50);
    });
  }

  it('takes every plainly valid read and write (the common case is never sent down the slow path)', () => {
    const page = BigInt(PAGE_BYTES);
    for (const addr of [0n, page, 1234n * page, MAX_ADDRESS - page + 1n]) {
      expect(hotOp('read', addr, 1), `read at ${addr}`).to.not.equal(undefined);
      expect(hotOp('write', addr, new Uint8Array(PAGE_BYTES)), `write at ${addr}`).to.not.equal(undefined);
    }
    expect(hotOp('read', 0n, PAGES_PER_REQUEST_MAX)).to.not.equal(undefined);
  });
});
