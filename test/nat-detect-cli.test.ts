/**
 * The `p2pd` command (src/cli/main.ts, bin/p2pd.mjs) on loopback: `interfaces`, `nat` and
 * `stun` as text and JSON, the port-mapping hook, usage errors and exit codes, the launcher,
 * and examples/stun.ts.
 */
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, EXIT } from '../src/cli/main.js';
import { setPortMappingProbe } from '../src/cli/portmap-probe.js';
import { startStunServer, type StunServer } from '../src/nat/stun/index.js';
import { main as stunExample } from '../examples/stun.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function io(tty = false): { stdout: { write(s: string): boolean; isTTY: boolean; text: string }; stderr: { write(s: string): boolean; isTTY: boolean; text: string } } {
  const mk = () => {
    const o = { text: '', isTTY: tty, write(s: string): boolean {
      o.text += s;
      return true;
    } };
    return o;
  };
  return { stdout: mk(), stderr: mk() };
}

let srv: StunServer;
let spec: string;
beforeAll(async () => {
  srv = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], protos: ['udp', 'tcp'] });
  spec = `127.0.0.1:${srv.primary.port}`;
});
afterAll(async () => {
  setPortMappingProbe(undefined);
  await srv?.close();
});

describe('p2pd interfaces', () => {
  it('prints the interface table', async () => {
    const o = io();
    expect(await run(['interfaces'], o)).toBe(EXIT.OK);
    expect(o.stdout.text).toMatch(/^NAME\s+INDEX\s+STATE\s+DEFAULT\s+MAC/);
    expect(o.stdout.text).toMatch(/\n {4}127\.0\.0\.1\/8\s+loopback/);
  });

  it('--json gives the interfaces as data', async () => {
    const o = io();
    expect(await run(['interfaces', '--json'], o)).toBe(EXIT.OK);
    const j = JSON.parse(o.stdout.text) as { interfaces: { name: string; loopback: boolean; addresses: { address: string }[] }[] };
    const lo = j.interfaces.find((i) => i.loopback);
    expect(lo?.addresses.map((a) => a.address)).toContain('127.0.0.1');
  });
});

describe('p2pd nat', () => {
  it('--json: the detection result, progress lines on stderr (not a terminal)', async () => {
    const o = io();
    expect(await run(['nat', '--stun', spec, '--json', '--no-portmap'], o)).toBe(EXIT.OK);
    const r = JSON.parse(o.stdout.text) as { type: string; mapping: string; filtering: string; hairpin: boolean; delta: { type: string }; method: string };
    expect(r).toMatchObject({ type: 'OPEN', mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpin: true, method: 'rfc5780' });
    expect(r.delta.type).toBe('EQUAL');
    expect(o.stderr.text).toContain('… test I: Binding to');
  });

  it('text output with the port-mapping probe hook, and a spinner on a terminal', async () => {
    setPortMappingProbe(async () => [
      { method: 'upnp', available: true, externalAddress: '198.51.100.10' },
      { method: 'nat-pmp', available: false, detail: 'timeout' },
      { method: 'pcp', available: true },
    ]);
    try {
      const o = io(true);
      expect(await run(['nat', '--stun', spec, '--no-delta', '--no-hairpin'], o)).toBe(EXIT.OK);
      expect(o.stdout.text).toMatch(/^NAT type\s+OPEN$/m);
      expect(o.stdout.text).toMatch(/^Mapping\s+endpoint-independent$/m);
      expect(o.stdout.text).toMatch(/^External\s+127\.0\.0\.1:\d+$/m);
      expect(o.stdout.text).toMatch(/^Port delta\s+not tested$/m);
      expect(o.stdout.text).toMatch(/^STUN server\s+127\.0\.0\.1:\d+ \(RFC 5780, other 127\.0\.0\.2:\d+\)$/m);
      expect(o.stdout.text).toContain('upnp: yes (198.51.100.10), nat-pmp: no (timeout), pcp: yes');
      expect(o.stderr.text).toMatch(/\r\x1b\[2K[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] /);
    } finally {
      setPortMappingProbe(undefined);
    }
  });

  it('the default probe reports what src/nat/portmap offers (never fails the command)', async () => {
    const o = io();
    expect(await run(['nat', '--stun', spec, '--json', '-q', '--no-delta', '--no-hairpin', '--timeout', '5000'], o)).toBe(EXIT.OK);
    const r = JSON.parse(o.stdout.text) as { portMapping: { method: string; available: boolean }[] };
    expect(r.portMapping.map((p) => p.method)).toEqual(expect.arrayContaining(['upnp']));
    expect(o.stderr.text).toBe('');
  });

  it('a silent server: BLOCKED is a result (exit 0)', async () => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    try {
      const o = io();
      expect(await run(['nat', '--stun', `127.0.0.1:${s.address().port}`, '--json', '-q', '--no-portmap'], o)).toBe(EXIT.OK);
      expect(JSON.parse(o.stdout.text).type).toBe('BLOCKED');
    } finally {
      s.close();
    }
  });
});

describe('p2pd stun', () => {
  it('UDP and TCP, JSON and text; names are resolved by the CLI', async () => {
    let o = io();
    expect(await run(['stun', '--stun', spec, '--json', '-q'], o)).toBe(EXIT.OK);
    const m = JSON.parse(o.stdout.text) as { mapped: { port: number }; local: { port: number }; proto: string };
    expect(m.mapped.port).toBe(m.local.port);
    o = io();
    expect(await run(['stun', '--stun', spec, '--tcp', '-q'], o)).toBe(EXIT.OK);
    expect(o.stdout.text).toMatch(/^Mapped\s+127\.0\.0\.1:\d+$/m);
    expect(o.stdout.text).toMatch(/^Server\s+127\.0\.0\.1:\d+ \(tcp\)$/m);
    o = io();
    expect(await run(['stun', '-4', '--stun', `localhost:${srv.primary.port}`, '-q'], o)).toBe(EXIT.OK);
    expect(o.stdout.text).toMatch(/^Mapped\s+127\.0\.0\.1:\d+$/m);
  });

  it('no answer: exit 1 with a typed error code on stderr', async () => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    try {
      const o = io();
      const t0 = performance.now();
      expect(await run(['stun', '--stun', `127.0.0.1:${s.address().port}`, '--timeout', '300', '-q'], o)).toBe(EXIT.FAILED);
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(o.stderr.text).toMatch(/^p2pd: .*\[(ERR_TIMEOUT|ABORT_ERR)\]\n$/);
    } finally {
      s.close();
    }
  });
});

describe('p2pd usage', () => {
  it.each([
    [[], EXIT.USAGE],
    [['frobnicate'], EXIT.USAGE],
    [['nat'], EXIT.USAGE],
    [['nat', '--stun'], EXIT.USAGE],
    [['nat', '--stun', '1.2.3.4', '--timeout', 'soon'], EXIT.USAGE],
    [['nat', '--stun', '1.2.3.4', '--bogus'], EXIT.USAGE],
    [['stun', '--stun', 'bad host!'], EXIT.USAGE],
    [['stun', '--stun', '1.2.3.4', '--iface', 'lo', '--bind', '127.0.0.1'], EXIT.USAGE],
    [['help'], EXIT.OK],
    [['--help'], EXIT.OK],
    [['--version'], EXIT.OK],
  ] as [string[], number][])('%j exits %i', async (argv, code) => {
    const o = io();
    expect(await run(argv, o)).toBe(code);
    if (code === EXIT.USAGE) expect(o.stderr.text).not.toBe('');
  });
});

describe('bin/p2pd.mjs and examples/stun.ts', () => {
  it('the launcher runs the CLI (tsx when dist/ is not built)', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'p2pd.mjs'), 'stun', '--stun', spec, '--json', '-q'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(child, 'close')) as [number];
    expect(code, err).toBe(0);
    expect(JSON.parse(out).mapped.host).toBe('127.0.0.1');
  });

  it('examples/stun.ts main() against its own server', async () => {
    const lines: string[] = [];
    const r = await stunExample(undefined, (l) => lines.push(l));
    expect(r.mapping.mapped).toEqual(r.mapping.local);
    expect(r.changed?.from.host).toBe('127.0.0.2');
    expect(r.nat.type).toBe('OPEN');
    expect(lines.at(-1)).toMatch(/^NAT: OPEN/);
  });

  it('examples/stun.ts main() against a given server', async () => {
    const r = await stunExample(spec, () => undefined);
    expect(r.server).toEqual(srv.primary);
    expect(r.nat.method).toBe('rfc5780');
  });
});
