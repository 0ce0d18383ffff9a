/**
 * What a UDP client pipe (`pipeOpen('udp', dest)`) receives and sends, as the README's pipes
 * section documents it: datagrams from any source (not only `dest`), each with `msg.from`
 * naming its sender; a source subscription to take only `dest`'s; `framing` and
 * `maxMessageSize` checked but ignored (one datagram = one message); the datagram size limits.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, MessageTooBigError } from '../src/errors.js';
import { MAX_UDP_PAYLOAD, pipeOpen, type Framing, type Sub, type UdpPipe } from '../src/pipes/index.js';
import { LOOPBACKS, guardUnhandled, rawUdp, rejection, useCleanup } from './helpers/pipes.js';

guardUnhandled();
const cleanup = useCleanup();

/** Takes everything queued on `sub` without waiting. */
function drain(p: UdpPipe, sub: Sub): string[] {
  const out: string[] = [];
  for (let m = p.tryRecv(sub); m; m = p.tryRecv(sub)) out.push(m.data.toString());
  return out;
}

describe.each(LOOPBACKS)('UDP client pipe sources over $name', ({ host, family }) => {
  it('receives a datagram from a source other than dest, with msg.from naming that source, and can reply to it', async () => {
    const dest = cleanup.socket(await rawUdp(host));
    const stranger = cleanup.socket(await rawUdp(host));
    const client = cleanup.track(await pipeOpen('udp', { host, port: dest.address().port }, { bind: { host, port: 0 } }));

    stranger.send('from a stranger', client.local.port, host);
    const m = await client.recv({ timeout: 5_000 });
    expect(m.data.toString()).toBe('from a stranger');
    expect(m.from).toEqual({ host, port: stranger.address().port, family });
    expect(m.from).not.toEqual(client.remote);
    expect(client.stats).toMatchObject({ messagesIn: 1, unmatched: 0 });

    const reply = once(stranger, 'message') as Promise<[Buffer, { port: number }]>;
    await client.send('back to you', m.from);
    const [data, rinfo] = await reply;
    expect(data.toString()).toBe('back to you');
    expect(rinfo.port).toBe(client.local.port);
  });

  it('a source subscription { host, port: destPort } takes only the destination’s datagrams; SUB_ALL still gets all', async () => {
    const dest = cleanup.socket(await rawUdp(host));
    const stranger = cleanup.socket(await rawUdp(host));
    const destPort = dest.address().port;
    const client = cleanup.track(await pipeOpen('udp', { host, port: destPort }, { bind: { host, port: 0 } }));
    const onlyDest: Sub = client.subscribe({ source: { host, port: destPort } });

    stranger.send('s1', client.local.port, host);
    dest.send('d1', client.local.port, host);
    stranger.send('s2', client.local.port, host);
    dest.send('d2', client.local.port, host);
    // Wait on the default SUB_ALL queue for all four (it receives every source)…
    const all: string[] = [];
    for (let i = 0; i < 4; i++) all.push((await client.recv({ timeout: 5_000 })).data.toString());
    expect(all.sort()).toEqual(['d1', 'd2', 's1', 's2']);
    // …while the source subscription got the destination's only, in order.
    expect(drain(client, onlyDest)).toEqual(['d1', 'd2']);
  });
});

describe('UDP pipes: framing and maxMessageSize are TCP-only', () => {
  it.each(['length', 'line'] as Framing[])("framing '%s' with maxMessageSize 8: accepted, then ignored (raw datagrams both ways, no size cap)", async (framing) => {
    const peer = cleanup.socket(await rawUdp('127.0.0.1'));
    const client = cleanup.track(await pipeOpen('udp', { host: '127.0.0.1', port: peer.address().port }, { bind: '127.0.0.1:0', framing, maxMessageSize: 8 }));
    expect(client.framing).toBe('raw');

    // Sent as is: no u32 length prefix, no newline appended, not refused for exceeding 8 bytes.
    const payload = 'line one\nline two, well over eight bytes';
    const got = once(peer, 'message') as Promise<[Buffer]>;
    await client.send(payload);
    expect((await got)[0].toString()).toBe(payload);

    // Received as one message: not split at '\n', not read as a length prefix (0xffffffff would
    // exceed any maxMessageSize), not capped at 8 bytes.
    const datagram = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('a\nb\nc'), Buffer.alloc(100, 0x41)]);
    peer.send(datagram, client.local.port, '127.0.0.1');
    const m = await client.recv({ timeout: 5_000 });
    expect(m.data.equals(datagram)).toBe(true);
    expect(client.tryRecv()).toBeUndefined();
    expect(client.stats).toMatchObject({ messagesIn: 1, bytesIn: datagram.length });
  });

  it('bad values are still rejected for UDP (InvalidArgumentError)', async () => {
    const dest = '127.0.0.1:9';
    expect(await rejection(pipeOpen('udp', dest, { framing: 'bogus' as Framing }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(pipeOpen('udp', dest, { maxMessageSize: 0 }))).toBeInstanceOf(InvalidArgumentError);
    expect(await rejection(pipeOpen('udp', undefined, { bind: '127.0.0.1:0', framing: 'length', maxMessageSize: 1.5 }))).toBeInstanceOf(InvalidArgumentError);
  });
});

describe('UDP pipes: datagram size', () => {
  it('IPv6 sends are capped at MAX_UDP_PAYLOAD (65 507) too, yet a larger IPv6 datagram (65 527) is received whole', async () => {
    const peer = cleanup.socket(await rawUdp('::1'));
    const client = cleanup.track(await pipeOpen('udp', { host: '::1', port: peer.address().port }, { bind: '[::1]:0' }));

    const err = await rejection(client.send(Buffer.alloc(MAX_UDP_PAYLOAD + 1)));
    expect(err).toBeInstanceOf(MessageTooBigError);
    expect(client.stats.messagesOut).toBe(0);

    const big = Buffer.alloc(65_527, 7);
    peer.send(big, client.local.port, '::1');
    const m = await client.recv({ timeout: 5_000 });
    expect(m.data.length).toBe(65_527);
    expect(m.data.equals(big)).toBe(true);
  });
});
