import { expect } from 'chai';
import { assert, present } from '../../../bus/assert.js';
import { MangroveError } from '../../../bus/errors.js';

describe('bus/assert', () => {
  it('passes a holding invariant and throws E_INTERNAL with the reason for a broken one', () => {
    expect(() => assert(1 + 1 === 2, 'arithmetic')).not.to.throw();
    try {
      assert(false, 'a page has one owner');
      expect.fail('assert(false) returned');
    } catch (err) {
      expect(err).to.be.instanceOf(MangroveError);
      expect((err as MangroveError).code).to.equal('E_INTERNAL');
      expect((err as MangroveError).message).to.equal('invariant broken: a page has one owner');
    }
  });

  it('present gives the value, and refuses null and undefined naming why it had to be there', () => {
    expect(present(0, 'zero is a value')).to.equal(0);
    expect(present('', 'so is the empty string')).to.equal('');
    expect(() => present(undefined, 'the level has a node entry')).to.throw(MangroveError, 'invariant broken: the level has a node entry');
    expect(() => present(null, 'the monitor is known')).to.throw(MangroveError, 'invariant broken: the monitor is known');
  });
});
