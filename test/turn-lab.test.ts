/**
 * TURN in the NAT lab: a1 (behind rtrA, port-restricted NAT) allocates on the lab's coturn
 * and exchanges messages both ways with b1 (behind rtrB, a symmetric NAT) and with pub1 (no
 * NAT), over UDP and over TCP to the server; a wrong password fails with TurnAuthError; and
 * against a dedicated coturn in srv with a 5 s maximum lifetime and 3 s nonces, the
 * allocation outlives its lifetime through refreshes. The agents run in the namespaces
 * (test/turn-lab-agent.ts, test/turn-lab-peer.ts). Needs root + the lab packages; in CI a
 * missing prerequisite fails the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  execNodeInNs, labAvailable, labDown, labUp, requireRoot, spawnNodeInNs, type Lab, type NsProcess,
} from './helpers/lab.js';

const SUITE = 'TURN relay through the NAT lab (a1 behind port-restricted, b1 behind symmetric)';
const AGENT = 'test/turn-lab-agent.ts';
const PEER = 'test/turn-lab-peer.ts';

type Line = Record<string, unknown> & { event: string };

function lines(text: string): Line[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);
}

/** Waits for an output line of `p` with `event` (and matching `pred`), returns it parsed. */
async function waitEvent(p: NsProcess, event: string, pred: (l: Line) => boolean = () => true, timeoutMs = 15_000): Promise<Line> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = lines(p.stdout()).find((l) => l.event === event && pred(l));
    if (hit) return hit;
    const failed = lines(p.stdout()).find((l) => l.event === 'error');
    if (failed) throw new Error(`agent failed: ${JSON.stringify(failed)}\n${p.stderr()}`);
    if (Date.now() > end) throw new Error(`timeout waiting for ${event} from ${p.ns}\nstdout: ${p.stdout()}\nstderr: ${p.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.runIf(labAvailable(SUITE))(SUITE, () => {
  let lab: Lab;
  let env: Readonly<Record<string, string>>;
  const procs: NsProcess[] = [];
  const spawn = (host: string, file: string, args: string[]): NsProcess => {
    const p = spawnNodeInNs(host, file, args, { timeoutMs: 120_000 });
    procs.push(p);
    return p;
  };

  beforeAll(async () => {
    requireRoot();
    lab = await labUp({ natA: 'port-restricted', natB: 'symmetric' });
    env = lab.env;
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await labDown();
  });

  const server = (): string => `${env.NATLAB_TURN_HOST}:${env.NATLAB_TURN_PORT}`;
  const creds = (): string[] => [`user=${env.NATLAB_TURN_USER}`, `pass=${env.NATLAB_TURN_PASS}`];

  for (const proto of ['udp', 'tcp'] as const) {
    it(`a1 relays (control over ${proto}) both ways with pub1 and with b1 behind a symmetric NAT`, async () => {
      const pubPort = proto === 'udp' ? 40100 : 40101;
      const pubEcho = spawn('pub1', PEER, [`bind=0.0.0.0:${pubPort}`, 'stay=1']);
      await waitEvent(pubEcho, 'listening');
      const agent = spawn('a1', AGENT, [
        `server=${server()}`, ...creds(), `proto=${proto}`,
        `permit=${env.NATLAB_RTRB_WAN4}`, `initiate=${env.NATLAB_PUB1_IP4}:${pubPort}`, 'count=3',
      ]);
      const allocated = await waitEvent(agent, 'allocated');
      expect(allocated.proto).toBe(proto);
      const relayed = String(allocated.relayed);
      expect(relayed.startsWith(`${env.NATLAB_TURN_HOST}:`)).toBe(true);
      // a1's server-reflexive address is rtrA's WAN address
      expect(String(allocated.mapped).startsWith(`${env.NATLAB_RTRA_WAN4}:`)).toBe(true);
      await waitEvent(agent, 'permitted');
      // a1 -> pub1 -> a1: pub1 saw the relayed address as the source and echoed through it
      for (let i = 0; i < 3; i++) await waitEvent(agent, 'recv', (l) => l.data === `echo:hello-${i}` && l.from === `${env.NATLAB_PUB1_IP4}:${pubPort}`);
      await waitEvent(pubEcho, 'recv', (l) => l.from === relayed && l.data === 'hello-0');
      // pub1 -> a1 -> pub1
      const fromPub = await execNodeInNs('pub1', PEER, [`target=${relayed}`, 'count=3']);
      const pubDone = lines(fromPub.stdout).find((l) => l.event === 'done');
      expect(pubDone, fromPub.stdout + fromPub.stderr).toMatchObject({ ok: true, from: [relayed] });
      // b1 (symmetric NAT) -> a1 -> b1: a1 sees rtrB's WAN address with a random port
      const fromB1 = await execNodeInNs('b1', PEER, [`target=${relayed}`, 'count=3']);
      const b1Done = lines(fromB1.stdout).find((l) => l.event === 'done');
      expect(b1Done, fromB1.stdout + fromB1.stderr).toMatchObject({ ok: true, from: [relayed] });
      const b1Seen = await waitEvent(agent, 'recv', (l) => String(l.from).startsWith(`${env.NATLAB_RTRB_WAN4}:`) && l.data === 'ping-0');
      expect(b1Seen.from).not.toBe(`${env.NATLAB_RTRB_WAN4}:0`);
      // closing deletes the allocation
      await agent.stop(5000);
      const closed = lines(agent.stdout()).find((l) => l.event === 'closed');
      expect(closed, agent.stdout() + agent.stderr()).toBeDefined();
      expect((closed?.stats as { channelDataOut: number }).channelDataOut).toBeGreaterThan(0);
      await pubEcho.stop();
    }, 60_000);
  }

  it('a wrong password fails with TurnAuthError (401)', async () => {
    for (const proto of ['udp', 'tcp']) {
      const r = await execNodeInNs('a1', AGENT, [`server=${server()}`, `user=${env.NATLAB_TURN_USER}`, 'pass=not-the-password', `proto=${proto}`]);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(lines(r.stdout).find((l) => l.event === 'error')).toMatchObject({ name: 'TurnAuthError', code: 'ERR_TURN_AUTH', errorCode: 401 });
    }
  }, 60_000);

  it('an allocation outlives its short lifetime when refreshed (dedicated coturn: 5 s lifetime, 3 s nonces)', async () => {
    const dir = `/tmp/p2pd-turn-lab-${process.pid}`;
    await lab.exec('srv', 'mkdir', ['-p', dir]);
    const port = 3490;
    const coturn = lab.spawn('srv', 'turnserver', [
      '-n', `--listening-ip=${env.NATLAB_TURN_HOST}`, `--listening-port=${port}`, `--relay-ip=${env.NATLAB_TURN_HOST}`,
      '--min-port=50000', '--max-port=50099', '--lt-cred-mech', '--realm=short.test', '--user=short:short-pass',
      `--userdb=${dir}/turndb`, '--no-tls', '--no-dtls', '--no-cli', '--fingerprint',
      '--max-allocate-lifetime=5', '--stale-nonce=3', `--pidfile=${dir}/turnserver.pid`, '--log-file=stdout', '--simple-log',
    ]);
    procs.push(coturn);
    try {
      const end = Date.now() + 15_000;
      for (;;) {
        const ss = await lab.exec('srv', 'ss', ['-lun']);
        if (ss.stdout.includes(`${env.NATLAB_TURN_HOST}:${port} `)) break;
        if (Date.now() > end) throw new Error(`dedicated coturn did not start:\n${coturn.stdout().slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const agent = spawn('a1', AGENT, [`server=${env.NATLAB_TURN_HOST}:${port}`, 'user=short', 'pass=short-pass', 'lifetime=5', 'stats=500', `permit=${env.NATLAB_RTRB_WAN4}`]);
      const allocated = await waitEvent(agent, 'allocated');
      expect(allocated.lifetime).toBe(5);
      // past the initial lifetime: still allocated, refreshed at least once
      await new Promise((r) => setTimeout(r, 8000));
      const st = lines(agent.stdout()).filter((l) => l.event === 'stats').pop();
      expect(st, agent.stdout()).toMatchObject({ closed: false });
      expect(Number(st?.refreshes)).toBeGreaterThanOrEqual(1);
      expect(lines(agent.stdout()).some((l) => l.event === 'pipe-closed')).toBe(false);
      // and it still relays: b1 (symmetric NAT) -> a1 -> b1
      const r = await execNodeInNs('b1', PEER, [`target=${String(allocated.relayed)}`, 'count=2']);
      expect(lines(r.stdout).find((l) => l.event === 'done'), r.stdout + r.stderr).toMatchObject({ ok: true });
      await agent.stop(5000);
      expect(lines(agent.stdout()).some((l) => l.event === 'closed')).toBe(true);
    } finally {
      await coturn.stop();
      await lab.exec('srv', 'rm', ['-rf', dir]);
    }
  }, 60_000);
});
