/** The node commands of the CLI (`p2pd node | connect | ping | serve`) and the quickstart demo. */
import { PassThrough } from 'node:stream';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { run } from '../src/cli/main.js';
import { stunGetMapping } from '../src/nat/stun/client.js';
import { parseAddress } from '../src/node/address.js';
import { runNodeCommand } from '../src/node/cli.js';
import { main as quickstart } from '../examples/quickstart.js';
import { main as udpFilters } from '../examples/udp-filters.js';
import { main as multiProtocol } from '../examples/multi-protocol-server.js';
import { capture, jsonLines, waitFor } from './helpers/cli.js';


describe('quickstart demo (npm run demo)', () => {
  it('two nodes, PING → PONG, the winning path printed; self-connect echoes', async () => {
    const lines: string[] = [];
    const r = await quickstart((l) => lines.push(l));
    expect(r.reply).toBe('PONG');
    expect(r.selfReply).toBe('test send');
    expect(r.path.strategy).toBe('direct');
    expect(r.startMs).toBeLessThan(1000);
    expect(lines.some((l) => /^A connected via direct over tcp: .* in [\d.]+ ms$/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^done/);
  });
});

describe('examples', () => {
  it('udp-filters.ts: recv with content and source filters, timeouts, unmatched drops', async () => {
    const r = await udpFilters(() => undefined);
    expect(r.pongs).toEqual(['PONG 1', 'PONG 2']);
    expect(r.fromB).toEqual(['PONG 2', 'hello from B']);
    expect(r.anyPortOfLoopback).toBe(4);
    expect(r.timedOut).toBe(true);
    expect(r.unmatched).toBe(1);
  });

  it('multi-protocol-server.ts: one protocol over TCP, UDP (v4, v6) and P2P pipes', async () => {
    const r = await multiProtocol(() => undefined);
    const vias = new Set(r.answers.map((a) => a.via));
    expect(vias).toContain('tcp/IPv4');
    expect(vias).toContain('udp/IPv4');
    expect(vias).toContain('p2p/direct');
    for (const a of r.answers) {
      if (a.request.startsWith('UPPER')) expect(a.reply).toBe('MULTI PROTOCOL');
      if (a.request === 'TIME') expect(a.reply).toMatch(/^TIME \d{4}-/);
      if (a.request === 'FLY') expect(a.reply).toMatch(/^ERROR/);
    }
  });
});

describe('p2pd node / ping / connect / serve', () => {
  it('node prints its address (JSON); ping gets every echo; connect chats', async () => {
    const srv = capture();
    const running = run(['node', '--loopback', '--json'], srv.io);
    await waitFor(() => srv.out().includes('"event":"address"'));
    const addr = jsonLines(srv.out())[0]?.addr as string;
    expect(parseAddress(addr).idHex).toBe(jsonLines(srv.out())[0]?.id);

    const ping = capture();
    const code = await run(['ping', addr, '--loopback', '--count', '3', '--interval', '0', '--json'], ping.io);
    expect(code).toBe(0);
    const ev = jsonLines(ping.out());
    expect(ev[0]).toMatchObject({ event: 'connected', path: { strategy: 'direct', transport: 'tcp' } });
    expect(ev.filter((x) => x.event === 'ping' && typeof x.ms === 'number')).toHaveLength(3);
    expect(ev.at(-1)).toMatchObject({ event: 'summary', sent: 3, received: 3, lost: 0 });

    const chat = capture();
    const stdin = new PassThrough();
    const conn = runNodeCommand(['connect', addr, '--loopback', '--strategy', 'reverse', '--json'], { ...chat.io, stdin });
    await waitFor(() => chat.out().includes('"connected"'));
    expect(jsonLines(chat.out())[0]).toMatchObject({ path: { strategy: 'reverse' } });
    stdin.write('hello node\n');
    await waitFor(() => chat.out().includes('hello node'));
    expect(jsonLines(chat.out())).toContainEqual({ event: 'message', text: 'hello node' });
    stdin.end();
    expect(await conn).toBe(0);
    expect(jsonLines(srv.out()).filter((x) => x.event === 'peer')).toHaveLength(2);

    srv.stop();
    expect(await running).toBe(0);
  });

  it('bad usage and bad addresses have the right exit codes', async () => {
    const c = capture();
    expect(await run(['ping'], c.io)).toBe(2);
    expect(await run(['connect', 'x', 'y'], c.io)).toBe(2);
    expect(await run(['ping', 'p2pdnope', '--count', 'many'], c.io)).toBe(2);
    const d = capture();
    expect(await run(['ping', 'p2pdnope', '--json'], d.io)).toBe(2);
    expect(jsonLines(d.out())).toEqual([expect.objectContaining({ event: 'error', name: 'UsageError', exit: 2 })]);
    expect(d.err()).toMatch(/^p2pd: invalid peer address \(length\)/);
  });

  it('serve runs an MQTT broker and a STUN server', async () => {
    const c = capture();
    const running = run(['serve', '--host', '127.0.0.1', '--mqtt-port', '0', '--stun-port', '0', '--json'], c.io);
    await waitFor(() => c.out().includes('"serving"'));
    const ev = jsonLines(c.out())[0] as { mqtt: string; stun: string };
    const client = await mqtt.connectAsync(ev.mqtt, { protocolVersion: 4 });
    await client.endAsync(true);
    const port = Number(/udp 127\.0\.0\.1:(\d+)/.exec(ev.stun)?.[1]);
    const m = await stunGetMapping({ server: `127.0.0.1:${port}`, timeout: 2000 });
    expect(m.mapped.host).toBe('127.0.0.1');
    c.stop();
    expect(await running).toBe(0);
  });
});
