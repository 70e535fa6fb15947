/**
 * Redis for bench/engine.ts: a small RESP2 client over node:net (commands
 * pipelined on one connection, answers matched in order), and the
 * lifecycle of the redis-server processes the bench starts on free loopback
 * ports and stops after (by pid). Not a benchmark: bench/run.ts skips
 * `*-peer.ts` files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import { freePort } from '../spec/helpers/ports.js';

/** An error reply (`-ERR …`); inside an array it is a value, at the top it rejects. */
export class RespError extends Error {}

export type RespValue = string | number | Buffer | null | RespError | RespValue[];

const CRLF = Buffer.from('\r\n');

/** The RESP2 encoding of one command: an array of bulk strings. */
export function encodeCommand(args: readonly (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    parts.push(Buffer.from(`$${b.byteLength}\r\n`), b, CRLF);
  }
  return Buffer.concat(parts);
}

/** One reply parsed from `buf` at `pos`: the value and where the next one starts; undefined while incomplete. */
export function parseReply(buf: Buffer, pos: number): { value: RespValue; next: number } | undefined {
  if (pos >= buf.length) return undefined;
  const eol = buf.indexOf(CRLF, pos);
  if (eol < 0) return undefined;
  const type = buf[pos];
  const line = buf.toString('latin1', pos + 1, eol);
  const after = eol + 2;
  switch (type) {
    case 0x2b /* + */:
      return { value: line, next: after };
    case 0x2d /* - */:
      return { value: new RespError(line), next: after };
    case 0x3a /* : */:
      return { value: Number(line), next: after };
    case 0x24 /* $ */: {
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      if (buf.length < after + n + 2) return undefined;
      return { value: buf.subarray(after, after + n), next: after + n + 2 };
    }
    case 0x2a /* * */: {
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      const items: RespValue[] = [];
      let at = after;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, at);
        if (item === undefined) return undefined;
        items.push(item.value);
        at = item.next;
      }
      return { value: items, next: at };
    }
    default:
      throw new Error(`not a RESP reply: byte 0x${type.toString(16)} at ${pos}`);
  }
}

interface Waiting {
  resolve: (v: RespValue) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One connection to a Redis server. Every command ends: with its answer,
 * the server's error, or a timeout after which the connection is closed
 * (a late answer could no longer be matched to its command).
 */
export class RespClient {
  private readonly waiting: Waiting[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly port: number,
    private readonly timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new Error(`redis on port ${port}: ${err.message}`)));
    socket.on('close', () => this.fail(new Error(`redis on port ${port} closed the connection`)));
  }

  static connect(port: number, timeoutMs = 5_000, host = '127.0.0.1'): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ port, host });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`cannot connect to redis on ${host}:${port} within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to redis on ${host}:${port}: ${err.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RespClient(socket, port, timeoutMs));
      });
    });
  }

  /** Sends one command; pipelined behind any still waiting. */
  command(...args: (string | Uint8Array)[]): Promise<RespValue> {
    if (this.closed) return Promise.reject(this.failure ?? new Error('the redis client is closed'));
    return new Promise<RespValue>((resolve, reject) => {
      const timer = setTimeout(
        () => this.fail(new Error(`redis on port ${this.port} did not answer ${String(args[0])} within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      this.waiting.push({ resolve, reject, timer });
      this.socket.write(encodeCommand(args));
    });
  }

  close(): void {
    this.fail(new Error('the redis client was closed before the answer came'));
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let pos = 0;
    for (;;) {
      let reply: ReturnType<typeof parseReply>;
      try {
        reply = parseReply(this.buf, pos);
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      if (reply === undefined) break;
      pos = reply.next;
      const w = this.waiting.shift();
      if (w === undefined) {
        this.fail(new Error(`redis on port ${this.port} sent an answer nobody asked for`));
        return;
      }
      clearTimeout(w.timer);
      if (reply.value instanceof RespError) w.reject(reply.value);
      else w.resolve(reply.value);
    }
    // Copy the unparsed rest, so a parsed bulk string handed out is never overwritten.
    this.buf = pos >= this.buf.length ? Buffer.alloc(0) : Buffer.from(this.buf.subarray(pos));
  }

  private fail(err: Error): void {
    if (!this.closed) {
      this.closed = true;
      this.failure = err;
      this.socket.destroy();
    }
    for (const w of this.waiting.splice(0)) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }
}

/** The redis-server binary on PATH (or where Debian puts it), if there is one. */
export function findRedisServer(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin', '/usr/local/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, 'redis-server');
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RedisServerOptions {
  /** The redis-server binary. */
  binary: string;
  /** Its working directory (AOF, log); created if missing. */
  dir: string;
  /** Append-only file with `appendfsync always`: every write is fsynced before it is answered. */
  durable?: boolean;
  /** Port of a primary to replicate (`replicaof 127.0.0.1 PORT`). */
  replicaOf?: number;
  startTimeoutMs?: number;
}

/** A redis-server process the bench started; `stop()` ends it by pid. */
export class RedisServer {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(opts: RedisServerOptions): Promise<RedisServer> {
    mkdirSync(opts.dir, { recursive: true });
    const port = await freePort();
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--protected-mode', 'no',
      '--daemonize', 'no',
      '--dir', opts.dir,
      '--logfile', join(opts.dir, 'redis.log'),
      '--save', '',
      '--appendonly', opts.durable ? 'yes' : 'no',
      ...(opts.durable ? ['--appendfsync', 'always'] : []),
      ...(opts.replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(opts.replicaOf)] : []),
    ];
    const child = spawn(opts.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const server = new RedisServer(port, opts.dir, child);
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    try {
      const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
      for (;;) {
        if (spawnError) throw new Error(`cannot start ${opts.binary}: ${spawnError.message}`);
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`redis-server exited (${child.exitCode ?? child.signalCode}): ${stderr.trim() || server.logTail()}`);
        }
        if (await server.answers()) break;
        if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING: ${server.logTail()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  /** Waits until a replica of this server is online and caught up. */
  async waitForReplica(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.info('replication').catch(() => '');
      if (/^connected_slaves:[1-9]/m.test(info) && /^slave0:.*state=online/m.test(info)) return;
      if (Date.now() > deadline) throw new Error(`no replica came online for redis on port ${this.port}: ${info.replace(/\r?\n/g, ' ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async info(section: string): Promise<string> {
    const c = await RespClient.connect(this.port, 2_000);
    try {
      const v = await c.command('INFO', section);
      return Buffer.isBuffer(v) ? v.toString() : String(v);
    } finally {
      c.close();
    }
  }

  logTail(chars = 1_000): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8').slice(-chars).trim();
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM (redis shuts down cleanly), SIGKILL after 3 s. */
  stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const kill = setTimeout(() => {
        try {
          process.kill(child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 3_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      try {
        process.kill(child.pid!, 'SIGTERM');
      } catch {
        clearTimeout(kill);
        resolve();
      }
    });
  }

  /** Last resort on exit: SIGKILL by pid, synchronously. */
  killNow(): void {
    const pid = this.child.pid;
    if (pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }

  private async answers(): Promise<boolean> {
    let c: RespClient | undefined;
    try {
      c = await RespClient.connect(this.port, 1_000);
      return (await c.command('PING')) === 'PONG';
    } catch {
      return false;
    } finally {
      c?.close();
    }
  }
}
