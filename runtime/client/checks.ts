/**
 * What the client refuses before it sends anything (SPEC.md M24), read off
 * the wire's own schema (bus/messages/page.ts `clientPageOp`). The node's
 * codec drops a request that breaks the schema without a word, so a caller
 * would only see a timeout; here the same schema turns it into an error at
 * once. The limits live in the schema and its named constants; what lives
 * here is only the sentence each refusal gets, naming what was given.
 *
 * `wireOp` walks the op's fields in the order the schema lists them, so the
 * first wrong argument is the one named: the address first (a bigint in the
 * API, 16 bytes big-endian on the wire; outside the space or not at a page
 * start is machines/memory/address.ts's E_BAD_ADDRESS), then the counts, data
 * and options (E_BAD_ARGUMENT). A range must also end inside the space, which
 * the wire cannot tell from 16 bytes and a count: that is checked as soon as
 * the count is known good.
 */
import { z } from 'zod';
import { assert, present } from '../../bus/assert.js';
import { MangroveError } from '../../bus/errors.js';
import { clientPageOp, FS_ATTR_BYTES, PAGES_PER_REQUEST_MAX, TXN_RECORD_BYTES_MAX, type ClientPageOp } from '../../bus/messages/page.js';
import { id } from '../../bus/messages/schema.js';
import { addressKey, checkPageAddress, isPageAligned, MAX_ADDRESS, PAGE_BYTES, pageRange } from '../../machines/memory/address.js';

export type OpName = ClientPageOp['op'];
/** An op as the API takes it: the address a bigint, every other field as the caller gave it. */
export type ApiOp = { readonly op: OpName } & Readonly<Record<string, unknown>>;

type Shape = Readonly<Record<string, z.ZodType>>;
const shapes: ReadonlyMap<string, Shape> = new Map(clientPageOp.options.map((o): [string, Shape] => [o.shape.op.value, o.shape]));

/** How a refused field is told; the test itself is always the schema's. */
interface FieldRule {
  says(value: unknown, schema: z.ZodType): string;
  /** Where the API knows more than the wire does: a stricter test on top of the schema's. */
  also?(value: unknown): boolean;
}

/** An options object a call takes (`{copies, volatile}`): its fields are the op's `known` ones. */
export interface ApiOptions {
  readonly given: unknown;
  readonly known: readonly string[];
  /** How a refusal names it: 'alloc options'. */
  readonly what: string;
}

/**
 * The op as the codec will check it, or the error naming the first argument
 * it refuses. An options object's keys are checked where its first field
 * comes, so a typo in it is named after a wrong address or count, before its
 * own fields.
 */
export function wireOp(api: ApiOp, options?: ApiOptions): ClientPageOp {
  const shape = shapeOf(api.op);
  assert(Object.keys(api).every((k) => k in shape), `every field the client fills in is one ${api.op} has on the wire`);
  const wire: Record<string, unknown> = { op: api.op };
  let start: bigint | undefined;
  for (const field of Object.keys(shape)) {
    if (field === 'op') continue;
    const value = api[field];
    if (field === 'addr') {
      start = pageBase(value);
      wire.addr = addressKey(start);
      continue;
    }
    if (options !== undefined && field === options.known[0]) checkKeys(options.given, options.known, options.what);
    checkField(api.op, field, value);
    if (value !== undefined) wire[field] = value;
    const pages = pagesIn(field, value);
    if (start !== undefined && pages !== undefined) pageRange(start, pages);
  }
  // Every field passed on its own; the whole op is what the codec sees, so it is checked as a whole too.
  const whole = clientPageOp.safeParse(wire);
  if (!whole.success) throw new MangroveError('E_BAD_ARGUMENT', `the node would refuse this ${api.op}: ${whole.error.issues[0]?.message ?? 'it breaks the protocol'}`);
  return whole.data;
}

/**
 * A read's or a write's wire op, built without walking the schema field by
 * field: these are the calls a program makes most. Arguments that plainly
 * pass (a page-base bigint in the space; 1 to PAGES_PER_REQUEST_MAX pages,
 * or that many whole pages of data; a range that ends inside the space) give
 * the op at once; anything else gives undefined, and `wireOp` then names
 * what it refuses. spec/unit/runtime/client/checks.spec.ts checks, over
 * random arguments, that this accepts only what the schema accepts and
 * builds the op wireOp builds.
 */
export function hotOp(op: 'read' | 'write', addr: unknown, arg: unknown): ClientPageOp | undefined {
  if (typeof addr !== 'bigint' || !isPageAligned(addr)) return undefined;
  let pages: number;
  if (op === 'read') {
    if (typeof arg !== 'number' || !Number.isInteger(arg)) return undefined;
    pages = arg;
  } else {
    if (!(arg instanceof Uint8Array) || arg.byteLength % PAGE_BYTES !== 0) return undefined;
    pages = arg.byteLength / PAGE_BYTES;
  }
  if (pages < 1 || pages > PAGES_PER_REQUEST_MAX || addr + BigInt((pages - 1) * PAGE_BYTES) > MAX_ADDRESS) return undefined;
  return op === 'read' ? { op, addr: addressKey(addr), pages } : { op, addr: addressKey(addr), data: arg as Uint8Array };
}

/** Refuses `value` for `field` of `op` where the wire's schema would, with the field's sentence. */
export function checkField(op: OpName, field: string, value: unknown): void {
  const schema = present(shapeOf(op)[field], `${op} has a field ${field}`);
  const rule = ruleFor(op, field);
  if (!schema.safeParse(value).success || rule.also?.(value) === false) throw new MangroveError('E_BAD_ARGUMENT', rule.says(value, schema));
}

function shapeOf(op: OpName): Shape {
  return present(shapes.get(op), `${op} is a client.page op`);
}

/** `addr` as a page base: a bigint (else E_BAD_ARGUMENT) at the start of a page in the space (else E_BAD_ADDRESS). */
export function pageBase(addr: unknown): bigint {
  if (typeof addr !== 'bigint') {
    throw new MangroveError('E_BAD_ARGUMENT', `an address is a bigint such as 0x1000n, not ${describe(addr)}`);
  }
  return checkPageAddress(addr);
}

/** The id a client gives the node (an envelope's `from`): the wire's `id`. */
export function checkClientId(clientId: unknown): void {
  if (clientId !== undefined && !id.safeParse(clientId).success) {
    throw new MangroveError('E_BAD_ARGUMENT', `clientId must be a string of ${id.minLength ?? 1} to ${id.maxLength ?? '?'} characters, not ${describe(clientId)}`);
  }
}

/** A connection's count of milliseconds (`timeoutMs`, `recoveryWaitMs`): a whole number from `min` to `max`. */
export function checkMs(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new MangroveError('E_BAD_ARGUMENT', `${name} must be an integer from ${min} to ${max}, not ${describe(value)}`);
  }
  return value;
}

/** Refuses keys a call does not know: a typo (`{copis: 2}`) must not pass as the default. */
export function checkKeys(obj: unknown, known: readonly string[], what: string): void {
  if (typeof obj !== 'object' || obj === null) throw new MangroveError('E_BAD_ARGUMENT', `${what} must be an object, not ${describe(obj)}`);
  const unknown = Object.keys(obj).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw new MangroveError('E_BAD_ARGUMENT', `${what} has no ${unknown.map((k) => JSON.stringify(k)).join(', ')}; it takes ${known.join(', ')}`);
  }
}

/** How many pages a field that passed spans from the op's address, if it is the op's count. */
function pagesIn(field: string, value: unknown): number | undefined {
  if (field === 'pages' && typeof value === 'number') return value;
  if (field === 'data' && value instanceof Uint8Array) return value.byteLength / PAGE_BYTES;
  return undefined;
}

/** Sentences per field (`op.field` where two ops mean different things by one name); the rest follow the schema's kind. */
const rules: Readonly<Record<string, FieldRule>> = {
  pages: { says: (v, s) => `${integerRule('pages', s)} (${pagesNote(s)}), not ${describe(v)}` },
  data: { says: dataSentence },
  'lock.mode': { says: (v, s) => `a lock is ${oneOf(s)}, not ${describe(v)}` },
  'access.mode': { says: (v, s) => `access is for ${oneOf(s)}, not ${describe(v)}` },
  fs: { says: (v) => `fs must be a Uint8Array of ${FS_ATTR_BYTES} bytes, not ${describe(v)}` },
  record: {
    says: (v) =>
      v instanceof Uint8Array
        ? `a log record holds at most ${TXN_RECORD_BYTES_MAX} bytes; ${v.byteLength} were given: split it into several records`
        : `a log record must be a Uint8Array, not ${describe(v)}`,
  },
  // The wire takes any count; txnBegin never gives 0, so a 0 is the caller's mistake.
  txn: {
    says: (v) => `a transaction id is a whole number from txnBegin (1 or more), not ${describe(v)}`,
    also: (v) => v === undefined || (typeof v === 'number' && v >= 1),
  },
};

function ruleFor(op: OpName, field: string): FieldRule {
  return rules[`${op}.${field}`] ?? rules[field] ?? { says: (v, s) => bySchema(field, v, s) };
}

/** The sentence for a field no rule names, from what its schema is. */
function bySchema(field: string, value: unknown, schema: z.ZodType): string {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodNumber) return `${integerRule(field, schema)}, not ${describe(value)}`;
  if (inner instanceof z.ZodBoolean) return `${field} must be true or false, not ${describe(value)}`;
  if (inner instanceof z.ZodEnum) return `${field} is ${oneOf(schema)}, not ${describe(value)}`;
  const issue = schema.safeParse(value).error?.issues[0];
  return `${field} is refused (${issue?.message ?? 'it breaks the protocol'}), not ${describe(value)}`;
}

function unwrap(schema: z.ZodType): z.ZodType {
  return schema instanceof z.ZodOptional ? unwrap(schema.unwrap() as z.ZodType) : schema;
}

/** `copies must be an integer from 1 to 8`, the bounds read off the schema. */
function integerRule(field: string, schema: z.ZodType): string {
  const inner = unwrap(schema);
  const n = present(inner instanceof z.ZodNumber ? inner : undefined, `${field} is a number on the wire`);
  return `${field} must be an integer from ${n.minValue} to ${n.maxValue}`;
}

/** Why a page count has the bound it has: one request's worth, or a range's. */
function pagesNote(schema: z.ZodType): string {
  const inner = unwrap(schema);
  const max = inner instanceof z.ZodNumber ? (inner.maxValue ?? 0) : 0;
  return max === PAGES_PER_REQUEST_MAX ? `one request carries at most ${max} pages` : `2^${Math.log2(max)}`;
}

/** `'shared' or 'exclusive'`, the choices read off the schema. */
function oneOf(schema: z.ZodType): string {
  const inner = unwrap(schema);
  const options = inner instanceof z.ZodEnum ? (inner.options as readonly string[]) : [];
  return options.map((o) => `'${o}'`).join(' or ');
}

/** Why write data is refused: not bytes, not whole pages, or more than one request carries. */
function dataSentence(data: unknown): string {
  if (!(data instanceof Uint8Array)) return `data must be a Uint8Array, not ${describe(data)}`;
  const n = data.byteLength;
  if (n === 0 || n % PAGE_BYTES !== 0) {
    const whole = Math.floor(n / PAGE_BYTES);
    return `data must be whole ${PAGE_BYTES}-byte pages; ${n} bytes were given (${whole} ${whole === 1 ? 'page' : 'pages'} and ${n % PAGE_BYTES} bytes): pad the last page`;
  }
  return `one write carries at most ${PAGES_PER_REQUEST_MAX} pages (${PAGES_PER_REQUEST_MAX * PAGE_BYTES} bytes); ${n} bytes (${n / PAGE_BYTES} pages) were given: write them in parts`;
}

/** What a value is, for a sentence: `a number (4096)`, `a string ("0x1000")`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (value instanceof Uint8Array) return `${value.byteLength} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  switch (typeof value) {
    case 'string':
      return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
    case 'number':
      return `a number (${value})`;
    case 'bigint':
      return value >= 0n ? `0x${value.toString(16)}n` : `-0x${(-value).toString(16)}n`;
    case 'object':
      return 'an object';
    default:
      return `a ${typeof value}`;
  }
}
