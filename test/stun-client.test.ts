/**
 * The STUN client against p2pd's own server on loopback: UDP and TCP, IPv4 and IPv6, bound to
 * an address, a port or an interface; the client object keeps its pipe open (usable for
 * punching), classic mode, cancellation (signal, timeout, close) and argument checks.
 */
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, EndpointError, InvalidArgumentError, PipeClosedError, TimeoutError } from '../src/errors.js';
import { StunClient, parseStunServer, sourceAddressFor, startStunServer, stunGetMapping, type StunServer } from '../src/nat/stun/index.js';
import { pipeOpen } from '../src/pipes/open.js';

let v4: StunServer;
let v6: StunServer;

beforeAll(async () => {
  v4 = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], protos: ['udp', 'tcp'], rateLimit: false });
  v6 = await startStunServer({ addresses: ['::1'], ports: [0], protos: ['udp', 'tcp'], rateLimit: false });
});
afterAll(async () => {
  await v4?.close();
  await v6?.close();
});

describe('stunGetMapping', () => {
  for (const proto of ['udp', 'tcp'] as const) {
    for (const fam of [4, 6] as const) {
      it(`${proto} IPv${fam}: mapped = local on loopback, server/from/responseOrigin reported`, async () => {
        const s = fam === 4 ? v4 : v6;
        const m = await stunGetMapping({ server: s.primary, proto, timeout: 2000 });
        expect(m.proto).toBe(proto);
        expect(m.mapped).toEqual(m.local);
        expect(m.local.host).toBe(fam === 4 ? '127.0.0.1' : '::1');
        expect(m.server).toEqual(s.primary);
        expect(m.from).toEqual(s.primary);
        expect(m.responseOrigin).toEqual(s.primary);
        expect(m.rtt).toBeGreaterThan(0);
        expect(m.rtt).toBeLessThan(1000);
        expect(m.software).toBe('p2pd');
        if (fam === 4) expect(m.otherAddress).toEqual(v4.other);
      });
    }
  }

  it('binds to a chosen address and port, and to an interface', async () => {
    const probe = createSocket('udp4');
    probe.bind(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = probe.address().port;
    probe.close();
    const m = await stunGetMapping({ server: v4.primary, bind: { host: '127.0.0.1', port }, timeout: 2000 });
    expect(m.local).toEqual({ host: '127.0.0.1', port, family: 4 });
    expect(m.mapped.port).toBe(port);
    const t = await stunGetMapping({ server: v4.primary, proto: 'tcp', bind: '127.0.0.1:0', timeout: 2000 });
    expect(t.local.host).toBe('127.0.0.1');
    const lo = await stunGetMapping({ server: v4.primary, bind: { iface: 'lo' }, timeout: 2000 });
    expect(lo.local.host).toBe('127.0.0.1');
  });

  it('classic (RFC 3489) mode: 16-byte transaction id, CHANGED-ADDRESS', async () => {
    const m = await stunGetMapping({ server: v4.primary, classic: true, timeout: 2000 });
    expect(m.classic).toBe(true);
    expect(m.mapped).toEqual(m.local);
    expect(m.otherKind).toBe('rfc3489');
    expect(m.otherAddress).toEqual(v4.other);
  });

  it('parses server strings; host names are refused (no DNS behind your back)', () => {
    expect(parseStunServer('1.2.3.4')).toEqual({ host: '1.2.3.4', port: 3478, family: 4 });
    expect(parseStunServer('1.2.3.4:19302')).toEqual({ host: '1.2.3.4', port: 19302, family: 4 });
    expect(parseStunServer('2001:db8::1')).toEqual({ host: '2001:db8::1', port: 3478, family: 6 });
    expect(parseStunServer('[2001:db8::1]')).toEqual({ host: '2001:db8::1', port: 3478, family: 6 });
    expect(parseStunServer('[2001:db8::1]:5')).toEqual({ host: '2001:db8::1', port: 5, family: 6 });
    expect(parseStunServer({ host: '1.2.3.4' })).toEqual({ host: '1.2.3.4', port: 3478, family: 4 });
    expect(() => parseStunServer('stun.l.google.com:19302')).toThrow(EndpointError);
    expect(() => parseStunServer('1.2.3.4:99999')).toThrow(EndpointError);
  });

  it('rejects bad options before opening anything', async () => {
    await expect(stunGetMapping({ server: v4.primary, proto: 'sctp' as 'udp' })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: v4.primary, family: 6 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: v4.primary, rto: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: v4.primary, timeout: Number.NaN })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(stunGetMapping({ server: v4.primary, signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  });
});

describe('sourceAddressFor', () => {
  it('resolves the local address of the route (loopback for loopback) and takes a signal', async () => {
    expect(await sourceAddressFor({ host: '127.0.0.1', port: 9, family: 4 })).toBe('127.0.0.1');
    expect(await sourceAddressFor({ host: '::1', port: 9, family: 6 })).toBe('::1');
    await expect(sourceAddressFor({ host: '127.0.0.1', port: 9, family: 4 }, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
  });
});

describe('StunClient', () => {
  it('keeps its UDP pipe: several bindings share the local port, and the pipe punches from the mapped port', async () => {
    await using client = await StunClient.open({ server: v4.primary, timeout: 2000 });
    const a = await client.binding();
    const b = await client.binding();
    expect(a.mapped).toEqual(b.mapped);
    expect(client.pipe.local.port).toBe(a.mapped.port);
    // Another server address through the same socket (RFC 5780 mapping test style).
    const c = await client.binding({ server: v4.other! });
    expect(c.mapped).toEqual(a.mapped);
    expect(c.from).toEqual(v4.other);
    // The pipe is open for application data: a peer sees it coming from the mapped port.
    const peer = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    try {
      await client.pipe.send('punch', peer.local);
      const msg = await peer.recv({ timeout: 2000 });
      expect(msg.data.toString()).toBe('punch');
      expect(msg.from.port).toBe(a.mapped.port);
      // Application data that is not STUN reaches onPacket listeners.
      const got = new Promise<string>((resolve) => client.transport.onPacket((p) => p.kind === 'other' && resolve(p.data.toString())));
      await peer.send('hello back', msg.from);
      expect(await got).toBe('hello back');
    } finally {
      await peer.close();
    }
  });

  it('CHANGE-REQUEST tests on the same socket', async () => {
    await using client = await StunClient.open({ server: v4.primary, timeout: 2000 });
    const both = await client.changeRequest({ changeIp: true, changePort: true });
    expect(both.from).toEqual(v4.other);
    expect(both.mapped.port).toBe(client.local.port);
    const ip = await client.changeRequest({ changeIp: true });
    expect(ip.from).toEqual({ host: '127.0.0.2', port: v4.primary.port, family: 4 });
  });

  it('TCP: one connection carries several transactions; other servers are refused', async () => {
    await using client = await StunClient.open({ server: v4.primary, proto: 'tcp', timeout: 2000 });
    const ms = await Promise.all([client.binding(), client.binding(), client.binding()]);
    for (const m of ms) expect(m.mapped).toEqual(client.local);
    expect(client.pipe.proto).toBe('tcp');
    await expect(client.binding({ server: v4.other! })).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('uses a pipe it is given and leaves it open', async () => {
    const pipe = await pipeOpen('udp', undefined, { bind: '127.0.0.1:0' });
    try {
      const client = await StunClient.open({ server: v4.primary, pipe, timeout: 2000 });
      const m = await client.binding();
      expect(m.mapped.port).toBe(pipe.local.port);
      await client.close();
      expect(pipe.closed).toBe(false);
    } finally {
      await pipe.close();
    }
  });

  it('close() rejects a pending transaction with PipeClosedError and closes the pipe; binding after close rejects', async () => {
    const silent = createSocket('udp4');
    silent.bind(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const client = await StunClient.open({ server: { host: '127.0.0.1', port: silent.address().port } });
      const pending = client.binding();
      await new Promise((r) => setTimeout(r, 20));
      const t0 = performance.now();
      await client.close();
      await expect(pending).rejects.toBeInstanceOf(PipeClosedError);
      expect(performance.now() - t0).toBeLessThan(500);
      expect(client.pipe.closed).toBe(true);
      await expect(client.binding()).rejects.toBeInstanceOf(PipeClosedError);
    } finally {
      silent.close();
    }
  });

  it('signal and timeout bound a transaction to a silent server', async () => {
    const silent = createSocket('udp4');
    silent.bind(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      await using client = await StunClient.open({ server: { host: '127.0.0.1', port: silent.address().port } });
      let t0 = performance.now();
      await expect(client.binding({ timeout: 150 })).rejects.toBeInstanceOf(TimeoutError);
      expect(performance.now() - t0).toBeLessThan(600);
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 50);
      t0 = performance.now();
      await expect(client.binding({ signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
      expect(performance.now() - t0).toBeLessThan(500);
      // Retransmission count + RTO bound it too (RFC 8489 schedule with a short RTO).
      t0 = performance.now();
      await expect(client.binding({ rto: 10, maxTries: 3 })).rejects.toBeInstanceOf(TimeoutError);
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      silent.close();
    }
  });
});
