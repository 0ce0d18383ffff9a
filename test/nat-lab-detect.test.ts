/**
 * NAT detection in the NAT lab: for each of the six router kinds, `detectNat` (through the
 * `p2pd nat --json` CLI, run inside the lab host behind that router) reports the configured
 * P2PD type, RFC 4787 mapping and filtering, and port allocation delta, with coturn (RFC 5780)
 * in under 1 s, and the same with stund (RFC 3489 classic). Two kinds per lab: a1 sits behind
 * rtrA, b1 behind rtrB. The first lab also checks the STUN client against coturn over UDP/TCP,
 * IPv4/IPv6, and IPv6 detection (no NAT, stateful firewall).
 *
 * Needs root + the lab packages (test/lab/install-deps.sh); in CI a missing lab fails the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAvailable, labUp, nodeCommand, requireRoot, type ExecResult, type Lab, type NatKind } from './helpers/lab.js';

const SUITE = 'NAT lab: detectNat per router kind';

interface Expect {
  type: string;
  mapping: string;
  filtering: string;
  delta: string;
  nat: boolean;
}

const EXPECT: Record<NatKind, Expect> = {
  'full-cone': { type: 'FULL_CONE', mapping: 'endpoint-independent', filtering: 'endpoint-independent', delta: 'EQUAL', nat: true },
  'restricted-cone': { type: 'RESTRICTED_CONE', mapping: 'endpoint-independent', filtering: 'address-dependent', delta: 'EQUAL', nat: true },
  'port-restricted': { type: 'PORT_RESTRICTED_CONE', mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', delta: 'EQUAL', nat: true },
  symmetric: { type: 'SYMMETRIC', mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', delta: 'RANDOM', nat: true },
  firewall: { type: 'SYMMETRIC_UDP_FIREWALL', mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', delta: 'EQUAL', nat: false },
  none: { type: 'OPEN', mapping: 'endpoint-independent', filtering: 'endpoint-independent', delta: 'EQUAL', nat: false },
};

/** Two kinds per lab: [rtrA, rtrB]. */
const LABS: [NatKind, NatKind][] = [
  ['full-cone', 'restricted-cone'],
  ['port-restricted', 'symmetric'],
  ['firewall', 'none'],
];

interface NatJson {
  type: string;
  mapping: string;
  filtering: string;
  nat: boolean;
  method: string;
  external?: { host: string; port: number };
  local?: { host: string; port: number };
  delta?: { type: string; value: number };
  hairpin?: boolean;
  ms: number;
  tests: { name: string; ok: boolean; at: number; error?: string }[];
}

function cli(lab: Lab, host: string, args: string[]): Promise<ExecResult> {
  const c = nodeCommand('src/cli/main.ts', args);
  return lab.exec(host, c.cmd, c.args, { timeoutMs: 30_000 });
}

function parse<T>(r: ExecResult): T {
  expect(r.code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** Detection times per kind, printed at the end (the benchmark reports them too). */
const times: string[] = [];

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  afterAll(() => {
    if (times.length) console.log(`[nat-lab-detect] detection wall time (in-process):\n${times.join('\n')}`);
  });

  for (const [kindA, kindB] of LABS) {
    describe(`rtrA ${kindA}, rtrB ${kindB}`, () => {
      let lab: Lab;
      const rfc5780 = new Map<NatKind, NatJson>();
      const classic = new Map<NatKind, NatJson>();
      const hosts: [NatKind, string][] = [[kindA, 'a1'], [kindB, 'b1']];

      beforeAll(async () => {
        requireRoot();
        lab = await labUp({ natA: kindA, natB: kindB, upnpA: false });
        const coturn = lab.env.NATLAB_STUN_HOST as string;
        const stund = lab.env.NATLAB_STUND_HOST as string;
        // RFC 5780 runs one at a time (their timing is asserted), then both classic runs at once.
        for (const [kind, host] of hosts) {
          rfc5780.set(kind, parse<NatJson>(await cli(lab, host, ['nat', '--stun', coturn, '--json', '-q', '--no-portmap'])));
        }
        const cl = await Promise.all(hosts.map(([, host]) => cli(lab, host, ['nat', '--stun', stund, '--json', '-q', '--no-portmap', '--no-hairpin'])));
        hosts.forEach(([kind], i) => classic.set(kind, parse<NatJson>(cl[i] as ExecResult)));
        for (const [kind] of hosts) {
          const r = rfc5780.get(kind) as NatJson;
          const c = classic.get(kind) as NatJson;
          times.push(`  ${kind.padEnd(16)} ${r.type.padEnd(24)} RFC 5780 ${r.ms.toFixed(0).padStart(4)} ms   RFC 3489 ${c.ms.toFixed(0).padStart(4)} ms`);
        }
      }, 120_000);

      afterAll(async () => {
        await lab?.down();
      });

      for (const [kind, host] of [[kindA, 'a1'], [kindB, 'b1']] as const) {
        const want = EXPECT[kind];
        it(`${kind} (${host}): RFC 5780 gives ${want.type}, ${want.mapping} mapping, ${want.filtering} filtering, delta ${want.delta}, in < 1 s`, () => {
          const r = rfc5780.get(kind) as NatJson;
          const detail = JSON.stringify(r.tests);
          expect(r.method).toBe('rfc5780');
          expect(r.type, detail).toBe(want.type);
          expect(r.mapping, detail).toBe(want.mapping);
          expect(r.filtering, detail).toBe(want.filtering);
          expect(r.nat).toBe(want.nat);
          expect(r.delta?.type).toBe(want.delta);
          const wan = host === 'a1' ? lab.env.NATLAB_RTRA_WAN4 : lab.env.NATLAB_RTRB_WAN4;
          const ip = host === 'a1' ? lab.env.NATLAB_A1_IP4 : lab.env.NATLAB_B1_IP4;
          expect(r.external?.host).toBe(want.nat ? wan : ip);
          expect(r.local?.host).toBe(ip);
          // Hairpin: the lab's NATs have no NAT loopback; without NAT the host reaches itself.
          expect(r.hairpin).toBe(!want.nat);
          expect(r.ms).toBeLessThan(1000);
        });

        it(`${kind} (${host}): RFC 3489 classic (stund) gives the same type`, () => {
          const c = classic.get(kind) as NatJson;
          expect(c.method).toBe('rfc3489');
          expect(c.type, JSON.stringify(c.tests)).toBe(want.type);
          expect(c.mapping).toBe(want.mapping);
          expect(c.filtering).toBe(want.filtering);
          expect(c.delta?.type).toBe(want.delta);
        });
      }

      if (kindA === 'full-cone') {
        it('STUN client against coturn from a1: UDP and TCP, IPv4 (through the NAT) and IPv6 (routed)', async () => {
          const v4 = lab.env.NATLAB_STUN_HOST as string;
          const v6 = lab.env.NATLAB_STUN6_HOST as string;
          const runs = await Promise.all([
            cli(lab, 'a1', ['stun', '--stun', v4, '--json', '-q']),
            cli(lab, 'a1', ['stun', '--stun', v4, '--tcp', '--json', '-q']),
            cli(lab, 'a1', ['stun', '--stun', `[${v6}]:3478`, '--json', '-q']),
            cli(lab, 'a1', ['stun', '--stun', v6, '--tcp', '--json', '-q']),
            cli(lab, 'a1', ['stun', '--stun', v4, '--bind', `${lab.env.NATLAB_A1_IP4}:45123`, '--json', '-q']),
          ]);
          type M = { mapped: { host: string; port: number }; local: { host: string; port: number }; otherAddress?: { host: string }; proto: string };
          const [u4, t4, u6, t6, fixed] = runs.map((r) => parse<M>(r)) as [M, M, M, M, M];
          expect(u4.mapped.host).toBe(lab.env.NATLAB_RTRA_WAN4);
          expect(u4.otherAddress?.host).toBe(lab.env.NATLAB_STUN_ALT_HOST);
          expect(t4.proto).toBe('tcp');
          expect(t4.mapped.host).toBe(lab.env.NATLAB_RTRA_WAN4);
          expect(u6.mapped.host).toBe(lab.env.NATLAB_A1_IP6);
          expect(u6.mapped.port).toBe(u6.local.port);
          expect(t6.mapped.host).toBe(lab.env.NATLAB_A1_IP6);
          expect(fixed.local).toEqual({ host: lab.env.NATLAB_A1_IP4, port: 45123, family: 4 });
          expect(fixed.mapped.port).toBe(45123); // Linux masquerade preserves the port
        });

        it('IPv6 from a1 (no NAT, stateful firewall): SYMMETRIC_UDP_FIREWALL', async () => {
          const r = parse<NatJson>(await cli(lab, 'a1', ['nat', '-6', '--stun', lab.env.NATLAB_STUN6_HOST as string, '--json', '-q', '--no-portmap', '--no-delta']));
          expect(r.method).toBe('rfc5780');
          expect(r.nat).toBe(false);
          expect(r.type).toBe('SYMMETRIC_UDP_FIREWALL');
          expect(r.filtering).toBe('address-and-port-dependent');
        });

        it('a server that never answers gives BLOCKED within the binding timeout', async () => {
          const t0 = performance.now();
          const r = parse<NatJson>(await cli(lab, 'a1', ['nat', '--stun', `${lab.env.NATLAB_PUB1_IP4}:3478`, '--json', '-q', '--no-portmap']));
          expect(r.type).toBe('BLOCKED');
          expect(r.method).toBe('none');
          expect(performance.now() - t0).toBeLessThan(15_000);
        });
      }
    });
  }
});
