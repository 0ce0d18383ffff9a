/**
 * TCP framing: raw interop with plain node:net peers, length-prefixed and line framing over
 * real sockets (bursts, large split messages, oversized frames and garbage from raw peers),
 * plus property tests of the incremental decoders with arbitrary chunking.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameError, InvalidArgumentError, MessageTooBigError, PipeClosedError } from '../src/errors.js';
import { LengthDecoder, LineDecoder, encodeFrame, pipeOpen, type TcpPipe } from '../src/pipes/index.js';
import {
  LOOPBACKS,
  closedWith,
  guardUnhandled,
  hostPort,
  lengthFrame,
  rawConnect,
  rawServer,
  readBytes,
  rejection,
  thrown,
  useCleanup,
  within,
} from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

/** Writes `buf` to a raw socket in pieces, yielding to the event loop between them. */
async function writeInPieces(s: import('node:net').Socket, buf: Buffer, sizes: number[]): Promise<void> {
  let off = 0;
  let i = 0;
  while (off < buf.length) {
    const n = Math.min(sizes[i++ % sizes.length] as number, buf.length - off);
    await new Promise<void>((resolve, reject) => s.write(buf.subarray(off, off + n), (e) => (e ? reject(e) : resolve())));
    off += n;
    await new Promise((r) => setImmediate(r));
  }
}

describe('raw framing interoperates with plain node:net peers', () => {
  it.each(LOOPBACKS)('p2pd server ⇄ node:net client over $name: arbitrary chunks round-trip byte-exact', async ({ host }) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, onMessage: (m) => m.pipe.send(m.data) }));
    const sock = cleanup.socket(await rawConnect(host, server.local.port));
    const conn = await server.accept({ timeout: 5_000 });
    const data = randomBytes(300_000);
    const echoed = readBytes(sock, data.length);
    await writeInPieces(sock, data, [1, 7, 1000, 65536, 3, 40_000]);
    expect((await within(echoed, 10_000, 'echo')).equals(data)).toBe(true);
    // counters live on the accepted pipe
    expect(conn.stats.bytesIn).toBe(data.length);
    expect(conn.stats.bytesOut).toBe(data.length);
    expect(conn.stats.messagesOut).toBe(conn.stats.messagesIn);
  });

  it.each(LOOPBACKS)('p2pd client ⇄ node:net server over $name', async ({ host }) => {
    const raw = cleanup.track(await rawServer(host));
    const client = cleanup.track(await pipeOpen('tcp', hostPort(host, raw.port)));
    const sock = await raw.nextSocket();
    const data = randomBytes(100_000);
    await writeInPieces(sock, data, [5, 5000, 1]);
    const parts: Buffer[] = [];
    let got = 0;
    while (got < data.length) {
      const m = await client.recv({ timeout: 5_000 });
      parts.push(m.data);
      got += m.data.length;
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(client.stats.messagesIn).toBe(parts.length);
    // and the other direction: whatever the client sends arrives unframed
    const back = readBytes(sock, 6);
    await client.send('abc');
    await client.send(new Uint8Array([100, 101, 102]));
    expect((await back).toString()).toBe('abcdef');
  });
});

describe('length framing', () => {
  it.each(LOOPBACKS)('keeps message boundaries of 2000 small messages written in one burst ($name)', async ({ host }) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing: 'length', maxQueue: 4096 }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const msgs = Array.from({ length: 2000 }, (_, i) => `m${i}:${'.'.repeat(i % 17)}`);
    msgs.push(''); // empty messages are messages too
    const sends = msgs.map((m) => client.send(m)); // one burst, no awaiting in between
    await Promise.all(sends);
    for (const s of msgs) expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe(s);
    expect(conn.stats.messagesIn).toBe(msgs.length);
    expect(conn.tryRecv()).toBeUndefined();
  });

  it('splits a single raw write holding many frames into messages', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const msgs = Array.from({ length: 500 }, (_, i) => randomBytes(i % 50));
    sock.write(Buffer.concat(msgs.map((m) => lengthFrame(m))));
    for (const m of msgs) expect((await conn.recv({ timeout: 5_000 })).data.equals(m)).toBe(true);
  });

  it.each(LOOPBACKS)('delivers a 1 MiB message split across many chunks as one message ($name)', async ({ host }) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing: 'length' }));
    const sock = cleanup.socket(await rawConnect(host, server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const big = randomBytes(1024 * 1024);
    const small = Buffer.from('after');
    // header split 1+3 bytes, the body in odd-sized pieces, then a second frame
    await writeInPieces(sock, Buffer.concat([lengthFrame(big), lengthFrame(small)]), [1, 3, 7, 65_000, 100_001, 13]);
    const m = await conn.recv({ timeout: 10_000 });
    expect(m.data.length).toBe(big.length);
    expect(m.data.equals(big)).toBe(true);
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('after');
    expect(conn.stats.messagesIn).toBe(2);
  });

  it('p2pd → p2pd 1 MiB messages round-trip through an echo server', async () => {
    const server = cleanup.track(
      await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', onMessage: (m) => m.pipe.send(m.data) }),
    );
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    const a = randomBytes(1024 * 1024);
    const b = randomBytes(10);
    await Promise.all([client.send(a), client.send(b)]);
    expect((await client.recv({ timeout: 10_000 })).data.equals(a)).toBe(true);
    expect((await client.recv({ timeout: 10_000 })).data.equals(b)).toBe(true);
  });

  it('an oversized frame from a raw peer closes that pipe with FrameError; the server and other clients keep working', async () => {
    const server = cleanup.track(
      await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxMessageSize: 1024, onMessage: (m) => m.pipe.send(m.data) }),
    );
    const good = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    await server.accept({ timeout: 5_000 });
    await good.send('before');
    expect((await good.recv({ timeout: 5_000 })).data.toString()).toBe('before');

    const bad = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const badClosed = new Promise<void>((r) => bad.once('close', () => r()));
    const pipe: TcpPipe = await server.accept({ timeout: 5_000 });
    const closed = closedWith(pipe);
    bad.write(lengthFrame(Buffer.alloc(1025)));
    const err = await within(closed, 5_000, 'bad pipe close');
    expect(err).toBeInstanceOf(FrameError);
    expect((err as FrameError).code).toBe('ERR_FRAME');
    expect(pipe.closed).toBe(true);
    expect(pipe.closeError).toBe(err);
    await within(badClosed, 5_000, 'raw peer sees the connection close');
    expect(server.connections.has(pipe)).toBe(false);

    // the existing client and a new one still work; the limit is inclusive
    await good.send(Buffer.alloc(1024, 1));
    expect((await good.recv({ timeout: 5_000 })).data.length).toBe(1024);
    const again = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    await again.send('after');
    expect((await again.recv({ timeout: 5_000 })).data.toString()).toBe('after');
    expect(server.closed).toBe(false);
  });

  it('random bytes with a huge length prefix close only the garbage pipe', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', onMessage: (m) => m.pipe.send(m.data) }));
    const good = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length' }));
    await server.accept({ timeout: 5_000 });
    await good.send('hi');
    await good.recv({ timeout: 5_000 });
    for (let round = 0; round < 5; round++) {
      const bad = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
      const pipe = await server.accept({ timeout: 5_000 });
      const closed = closedWith(pipe);
      const garbage = randomBytes(5000);
      garbage[0] = 0xf0 | (garbage[0] as number); // length ≥ 0xF0000000: far above the 4 MiB default
      bad.write(garbage);
      expect(await within(closed, 5_000, 'garbage pipe close')).toBeInstanceOf(FrameError);
      expect(pipe.stats.messagesIn).toBe(0);
    }
    await good.send('still here');
    expect((await good.recv({ timeout: 5_000 })).data.toString()).toBe('still here');
    expect(server.connections.size).toBe(1);
  });

  it('send rejects a message above maxMessageSize with MessageTooBigError and the pipe stays usable', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length', onMessage: (m) => m.pipe.send(m.data) }));
    const client = cleanup.track(await pipeOpen('tcp', server.local, { framing: 'length', maxMessageSize: 100 }));
    const err = await rejection(client.send(Buffer.alloc(101)));
    expect(err).toBeInstanceOf(MessageTooBigError);
    expect((err as MessageTooBigError).code).toBe('ERR_MESSAGE_TOO_BIG');
    expect(client.stats.messagesOut).toBe(0);
    await client.send(Buffer.alloc(100, 7));
    expect((await client.recv({ timeout: 5_000 })).data.equals(Buffer.alloc(100, 7))).toBe(true);
  });
});

describe('line framing', () => {
  it.each(LOOPBACKS)('splits lines across and within chunks; \\r is kept ($name)', async ({ host }) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: { host, port: 0 }, framing: 'line' }));
    const sock = cleanup.socket(await rawConnect(host, server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    await writeInPieces(sock, Buffer.from('hel'), [3]);
    await writeInPieces(sock, Buffer.from('lo\nwor'), [6]);
    await writeInPieces(sock, Buffer.from('ld\n\ncrlf\r\nlast'), [2, 3]);
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await conn.recv({ timeout: 5_000 })).data.toString());
    expect(got).toEqual(['hello', 'world', '', 'crlf\r']);
    expect(conn.tryRecv()).toBeUndefined(); // 'last' has no newline yet
    sock.write('!\n');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('last!');
  });

  it('p2pd ⇄ p2pd: send appends the newline; the receiver strips it', async () => {
    const raw = cleanup.track(await rawServer('127.0.0.1'));
    const client = cleanup.track(await pipeOpen('tcp', hostPort('127.0.0.1', raw.port), { framing: 'line' }));
    const sock = await raw.nextSocket();
    const wire = readBytes(sock, 8);
    await client.send('one');
    await client.send('two');
    expect((await wire).toString()).toBe('one\ntwo\n');
  });

  it('a complete line above the maximum closes the pipe with FrameError', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line', maxMessageSize: 10 }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = await server.accept({ timeout: 5_000 });
    const closed = closedWith(conn);
    sock.write('0123456789\n01234567890\n');
    expect((await conn.recv({ timeout: 5_000 })).data.toString()).toBe('0123456789'); // exactly max is fine
    const err = await within(closed, 5_000, 'close');
    expect(err).toBeInstanceOf(FrameError);
    // the queue ends with PipeClosedError carrying the FrameError
    const e2 = await rejection(conn.recv());
    expect(e2).toBeInstanceOf(PipeClosedError);
    expect(e2.cause).toBe(err);
  });

  it('an unterminated line growing above the maximum closes the pipe with FrameError', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'line', maxMessageSize: 1000 }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = await server.accept({ timeout: 5_000 });
    const closed = closedWith(conn);
    await writeInPieces(sock, Buffer.alloc(1001, 0x61), [600]);
    expect(await within(closed, 5_000, 'close')).toBeInstanceOf(FrameError);
  });

  it("send of a message containing '\\n' rejects with InvalidArgumentError; nothing is sent", async () => {
    const raw = cleanup.track(await rawServer('127.0.0.1'));
    const client = cleanup.track(await pipeOpen('tcp', hostPort('127.0.0.1', raw.port), { framing: 'line' }));
    const sock = await raw.nextSocket();
    const err = await rejection(client.send('a\nb'));
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('ERR_INVALID_ARG');
    const wire = readBytes(sock, 3);
    await client.send('ok');
    expect((await wire).toString()).toBe('ok\n');
    expect(client.stats.messagesOut).toBe(1);
  });
});

describe('a peer that ends in the middle of a message', () => {
  it.each([
    ['length', Buffer.concat([lengthFrame('complete'), lengthFrame(Buffer.alloc(1000)).subarray(0, 600)])],
    ['length', Buffer.concat([lengthFrame('complete'), Buffer.from([0, 0])])], // half a header
    ['line', Buffer.from('complete\nunterminated')],
  ] as const)('%s framing: complete messages are delivered, then onClose(FrameError) — not a clean close', async (framing, wire) => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const closed = closedWith(conn);
    sock.end(wire); // data, then FIN
    const err = await within(closed, 5_000, 'close');
    expect(err).toBeInstanceOf(FrameError);
    expect(err?.message).toMatch(/middle of a message/);
    expect((await conn.recv()).data.toString()).toBe('complete');
    const e2 = await rejection(conn.recv());
    expect(e2).toBeInstanceOf(PipeClosedError);
    expect(e2.cause).toBe(err);
  });

  it('a clean end after complete messages closes without error', async () => {
    const server = cleanup.track(await pipeOpen('tcp', undefined, { bind: '127.0.0.1:0', framing: 'length' }));
    const sock = cleanup.socket(await rawConnect('127.0.0.1', server.local.port));
    const conn = cleanup.track(await server.accept({ timeout: 5_000 }));
    const closed = closedWith(conn);
    sock.end(Buffer.concat([lengthFrame('a'), lengthFrame('')]));
    expect(await within(closed, 5_000, 'close')).toBeUndefined();
    expect((await conn.recv()).data.toString()).toBe('a');
    expect((await conn.recv()).data.length).toBe(0);
  });
});

describe('decoders (property tests with arbitrary chunking)', () => {
  /** Splits `buf` at the given cut points. */
  function chunk(buf: Buffer, cuts: number[]): Buffer[] {
    const pts = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const p of pts) {
      out.push(buf.subarray(prev, p));
      prev = p;
    }
    out.push(buf.subarray(prev));
    return out;
  }

  it('LengthDecoder reproduces every frame for any chunking', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 9000 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        (frames, cuts) => {
          const wire = Buffer.concat(frames.map((f) => lengthFrame(Buffer.from(f))));
          const d = new LengthDecoder(9000);
          const got: Buffer[] = [];
          for (const c of chunk(wire, cuts)) d.push(c, (f) => got.push(Buffer.from(f)));
          expect(got.map((b) => b.toString('hex'))).toEqual(frames.map((f) => Buffer.from(f).toString('hex')));
          expect(d.pending).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('LengthDecoder rejects a header above the maximum even when split across chunks', () => {
    const d = new LengthDecoder(100);
    const wire = lengthFrame(Buffer.alloc(101));
    d.push(wire.subarray(0, 2), () => undefined);
    expect(thrown(() => d.push(wire.subarray(2, 5), () => undefined))).toBeInstanceOf(FrameError);
    const d2 = new LengthDecoder(100);
    const got: number[] = [];
    expect(thrown(() => d2.push(Buffer.concat([lengthFrame(Buffer.alloc(3)), wire]), (f) => got.push(f.length)))).toBeInstanceOf(FrameError);
    expect(got).toEqual([3]); // frames before the bad one are delivered
  });

  it('encodeFrame output decodes back (length and line), including big messages written as two buffers', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40_000 }), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (msgs, cuts) => {
        const parts: Buffer[] = [];
        for (const m of msgs) {
          const f = encodeFrame('length', Buffer.from(m), 40_000);
          if (Buffer.isBuffer(f)) parts.push(f);
          else parts.push(...f);
        }
        const d = new LengthDecoder(40_000);
        const got: string[] = [];
        for (const c of chunk(Buffer.concat(parts), cuts)) d.push(c, (f) => got.push(f.toString('hex')));
        expect(got).toEqual(msgs.map((m) => Buffer.from(m).toString('hex')));
      }),
      { numRuns: 100 },
    );
  });

  it('LineDecoder reproduces every line for any chunking', () => {
    const line = fc.string({ maxLength: 50 }).map((s) => s.replace(/\n/g, ''));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), fc.array(fc.nat(), { maxLength: 40 }), (lines, cuts) => {
        const wire = Buffer.concat(lines.map((l) => encodeFrame('line', Buffer.from(l), 1000) as Buffer));
        const d = new LineDecoder(1000);
        const got: string[] = [];
        for (const c of chunk(wire, cuts)) d.push(c, (f) => got.push(f.toString()));
        expect(got).toEqual(lines);
        expect(d.pending).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it('LineDecoder copies each byte of a long line a bounded number of times, however it is chunked (no quadratic re-scan)', () => {
    const max = 1 << 20;
    const line = Buffer.alloc(max - 1, 0x61);
    const copied = { bytes: 0 };
    const concat = Buffer.concat;
    const from = Buffer.from;
    Buffer.concat = ((list: readonly Uint8Array[], total?: number) => {
      const b = concat(list, total);
      copied.bytes += b.length;
      return b;
    }) as typeof Buffer.concat;
    Buffer.from = ((...a: Parameters<typeof Buffer.from>) => {
      const b = (from as (...x: unknown[]) => Buffer)(...a);
      copied.bytes += b.length;
      return b;
    }) as typeof Buffer.from;
    try {
      for (const size of [1, 100, 1024, 5000]) {
        copied.bytes = 0;
        const d = new LineDecoder(max);
        const got: Buffer[] = [];
        const wire = Buffer.concat([line, Buffer.from('\n')]);
        copied.bytes = 0;
        for (let off = 0; off < wire.length; off += size) d.push(wire.subarray(off, off + size), (f) => got.push(f));
        expect(got).toHaveLength(1);
        expect(got[0]?.equals(line)).toBe(true);
        // Each byte: at most one copy of its short chunk, plus one into the assembled line.
        expect(copied.bytes).toBeLessThanOrEqual(2 * wire.length);
        expect(d.pending).toBe(0);
      }
      // Over the limit as soon as the partial line passes it, whatever the chunking.
      const d = new LineDecoder(1000);
      expect(() => {
        for (let i = 0; i < 2000; i++) d.push(Buffer.from('x'), () => undefined);
      }).toThrow(FrameError);
    } finally {
      Buffer.concat = concat;
      Buffer.from = from;
    }
  });
});
