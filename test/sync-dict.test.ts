/**
 * Synced dict on loopback swarms: replication, leases, events, ties, partitions, and forged or
 * clock-abusing writes.
 */
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, LeaseError, NotFoundError } from '../src/errors.js';
import { Identity } from '../src/crypto/identity.js';
import type { SwarmPeer } from '../src/swarm/index.js';
import { DEFAULT_LEASE_TIME, KIND_SYNC, MAX_OWNERS_PER_KEY, SyncDict, encodeRecordList, signRecord, type SyncDictOptions } from '../src/sync/index.js';
import { delay, swarmOf, until } from './swarm-helpers.js';

/** A clock shared by the dicts of a test. */
class Clock {
  t = Date.now();
  readonly now = (): number => this.t;
}

function dicts(peers: SwarmPeer[], opts: SyncDictOptions = {}): SyncDict[] {
  return peers.map((p) => new SyncDict(p, opts));
}

function str(b: Buffer | undefined): string | undefined {
  return b?.toString('utf8');
}

/** Injects raw records into the swarm as `from`'s broadcast. */
function inject(from: SwarmPeer, d: SyncDict, raws: Buffer[]): void {
  from.broadcastInternal(KIND_SYNC, Buffer.concat([Buffer.from([1]), d.namespace, encodeRecordList(raws)]));
}

describe('synced dict: replication and events', () => {
  it('a key set before peers join reaches them; unicode; strings become bytes; events on every member', async () => {
    const [a] = await swarmOf(1);
    const da = new SyncDict(a!);
    await da.set('pre', 'before join');
    await da.set('ключ 🔑', 'значение ✓');
    const others = await swarmOf(2);
    const dOthers = dicts(others);
    const events: string[] = [];
    for (const [i, d] of dOthers.entries()) d.on('update', (k, v) => events.push(`${i}:${k}=${v}`));
    for (const p of others) await p.connect(a!.endpoint);
    await until(() => dOthers.every((d) => d.size === 2), 3000, 'state transfer');
    for (const d of dOthers) {
      expect(str(d.get('pre'))).toBe('before join');
      expect(str(d.get(Buffer.from('ключ 🔑')))).toBe('значение ✓');
      expect(d.meta('pre')?.owner).toBe(a!.idHex);
    }
    expect(events.sort()).toEqual(['0:pre=before join', '0:ключ 🔑=значение ✓', '1:pre=before join', '1:ключ 🔑=значение ✓']);
    // update/delete events everywhere, the writer included.
    const all = [da, ...dOthers];
    const log: string[] = [];
    for (const [i, d] of all.entries()) {
      d.on('update', (k, v) => log.push(`${i} update ${k}=${v}`));
      d.on('delete', (k) => log.push(`${i} delete ${k}`));
    }
    await dOthers[0]!.update({ x: '1', y: new Uint8Array([50]) });
    await until(() => all.every((d) => str(d.get('y')) === '2'));
    await dOthers[0]!.delete('x');
    await until(() => all.every((d) => !d.has('x')));
    expect(log.filter((l) => l.endsWith('delete x')).length).toBe(3);
    expect(log.filter((l) => l.includes('update y=2')).length).toBe(3);
    expect([...da.keys()].map(String).sort()).toEqual(['pre', 'y', 'ключ 🔑']);
  });

  it('get/has/meta defaults, missing keys, bad keys and values', async () => {
    const [p] = await swarmOf(1);
    const d = new SyncDict(p!);
    expect(d.get('nope')).toBeUndefined();
    expect(d.get('nope', 'dflt')).toBe('dflt');
    expect(d.has('nope')).toBe(false);
    expect(d.meta('nope')).toBeUndefined();
    await expect(d.delete('nope')).rejects.toBeInstanceOf(NotFoundError);
    await expect(d.set('', 'v')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(d.set('k', 42 as never)).rejects.toBeInstanceOf(InvalidArgumentError);
    await d.set('empty', '');
    expect(d.get('empty')?.length).toBe(0);
    expect(d.has('empty')).toBe(true);
  });
});

describe('synced dict: leases', () => {
  it('a non-owner write fails with LeaseError while the lease is live; delete releases it; writes renew it', async () => {
    const clock = new Clock();
    const [a, b] = await swarmOf(2);
    const [da, db] = dicts([a!, b!], { now: clock.now });
    await da.set('k', 'A');
    await until(() => str(db!.get('k')) === 'A');
    const e = await db!.set('k', 'B').then(() => undefined, (x: unknown) => x as LeaseError);
    expect(e).toBeInstanceOf(LeaseError);
    expect(e?.code).toBe('ERR_LEASE');
    expect(e?.owner).toBe(a!.idHex);
    await expect(db!.delete('k')).rejects.toBeInstanceOf(LeaseError);
    await expect(db!.update({ free: '1', k: 'B' })).rejects.toBeInstanceOf(LeaseError);
    expect(db!.has('free')).toBe(false); // all or nothing
    // The owner renews: the lease now ends an hour after the renewal.
    clock.t += 30 * 60_000;
    await da!.set('k', 'A2');
    await until(() => str(db!.get('k')) === 'A2');
    expect(db!.meta('k')?.expires).toBe(clock.t + DEFAULT_LEASE_TIME);
    clock.t += 45 * 60_000; // 75 min after the first write, 45 after the renewal
    await expect(db!.set('k', 'B')).rejects.toBeInstanceOf(LeaseError);
    await da!.delete('k');
    await until(() => !db!.has('k'));
    await db!.set('k', 'B');
    await until(() => str(da!.get('k')) === 'B');
    expect(da!.meta('k')?.owner).toBe(b!.idHex);
  });

  it('the lease lapses one hour after the last write (fails at +3599 s, works at +3601 s)', async () => {
    const clock = new Clock();
    const [a, b] = await swarmOf(2);
    const [da, db] = dicts([a!, b!], { now: clock.now });
    await da!.set('k', 'A');
    await until(() => db!.has('k'));
    clock.t += 3599_000;
    await expect(db!.set('k', 'B')).rejects.toBeInstanceOf(LeaseError);
    clock.t += 2_000;
    await db!.set('k', 'B');
    await until(() => str(da!.get('k')) === 'B');
    expect(da!.meta('k')?.owner).toBe(b!.idHex);
    await expect(da!.set('k', 'A again')).rejects.toBeInstanceOf(LeaseError);
  });

  it('a configurable lease time; dicts with other settings are separate', async () => {
    const clock = new Clock();
    const [a, b] = await swarmOf(2);
    const [da, db] = dicts([a!, b!], { now: clock.now, leaseTime: 1000 });
    const other = new SyncDict(b!, { now: clock.now, leaseTime: 2000 });
    await da!.set('k', 'A');
    await until(() => db!.has('k'));
    expect(other.has('k')).toBe(false);
    clock.t += 1001;
    await db!.set('k', 'B');
    await until(() => str(da!.get('k')) === 'B');
  });

  it('same-instant claims: the smaller id wins, deterministically, on every member', async () => {
    const clock = new Clock();
    const peers = await swarmOf(3);
    const ds = dicts(peers, { now: clock.now });
    // Both write in the same tick, before either hears of the other.
    const p1 = ds[0]!.set('tie', 'from 0');
    const p2 = ds[1]!.set('tie', 'from 1');
    await Promise.all([p1, p2]);
    const winner = Buffer.compare(peers[0]!.id, peers[1]!.id) < 0 ? 'from 0' : 'from 1';
    await until(() => ds.every((d) => str(d.get('tie')) === winner), 3000, 'tie resolved');
    await delay(100);
    expect(ds.map((d) => str(d.get('tie')))).toEqual([winner, winner, winner]);
  });

  it('leasing off: anyone may write, the last writer wins', async () => {
    const clock = new Clock();
    const [a, b] = await swarmOf(2);
    const [da, db] = dicts([a!, b!], { now: clock.now, leasing: false });
    await da!.set('k', 'A');
    await until(() => db!.has('k'));
    clock.t += 1;
    await db!.set('k', 'B');
    await until(() => str(da!.get('k')) === 'B');
    expect(da!.meta('k')?.expires).toBeUndefined();
  });
});

describe('synced dict: partitions', () => {
  it('members that wrote while partitioned converge to the same state after they reconnect', async () => {
    const clock = new Clock();
    const left = await swarmOf(2);
    const right = await swarmOf(2);
    const dl = dicts(left, { now: clock.now });
    const dr = dicts(right, { now: clock.now });
    await dl[0]!.set('shared', 'left first');
    await dl[1]!.set('left-only', 'L');
    clock.t += 5_000;
    await dr[0]!.set('shared', 'right later'); // a lease violation nobody on the right could see
    await dr[1]!.set('right-only', 'R');
    await dr[1]!.set('both', 'right');
    clock.t += 1;
    await dl[1]!.set('both', 'left');
    await until(() => str(dl[0]!.get('both')) === 'left' && str(dr[0]!.get('both')) === 'right');
    // Heal the partition through one link.
    await right[0]!.connect(left[0]!.endpoint);
    const all = [...dl, ...dr];
    const snapshot = (d: SyncDict): string =>
      JSON.stringify([...d.entries()].map(([k, v]) => [String(k), String(v), d.meta(k)?.owner]).sort());
    await until(() => all.every((d) => d.size === 4 && snapshot(d) === snapshot(all[0]!)), 5000, 'convergence');
    // The earlier claim holds the shared key; each side's own keys survive.
    expect(str(all[3]!.get('shared'))).toBe('left first');
    expect(str(all[0]!.get('right-only'))).toBe('R');
    expect(str(all[0]!.get('both'))).toBe('right'); // claimed first (by 1 ms) on the right
    expect(all[0]!.digest().equals(all[3]!.digest())).toBe(true);
  });
});

describe('synced dict: anti-entropy', () => {
  it('a write that reached only one member (its broadcast lost) still reaches every member through the periodic digest exchange', async () => {
    const peers = await swarmOf(3);
    const [a, m, v] = peers as [SwarmPeer, SwarmPeer, SwarmPeer];
    const [da, dm, dv] = dicts([a, m, v], { syncInterval: 100 });
    // A record by A that only v receives (as if the broadcast to the others had been dropped).
    const rec = signRecord(a.identity, a.protocolHash, { namespace: dv!.namespace, since: Date.now(), ts: Date.now(), tombstone: false, key: Buffer.from('lost'), value: Buffer.from('found') }).raw;
    // When v applies it, nobody else has it (checked in v's event: a sync round may follow at once).
    const othersHadIt = new Promise<boolean>((resolve) => {
      dv!.on('update', (k) => {
        if (str(k) === 'lost') resolve(da!.has('lost') || dm!.has('lost'));
      });
    });
    m.sendInternal(KIND_SYNC, v.id, Buffer.concat([Buffer.from([1]), dv!.namespace, encodeRecordList([rec])]));
    await until(() => str(dv!.get('lost')) === 'found', 3000, 'v has it');
    expect(await othersHadIt).toBe(false);
    await until(() => str(da!.get('lost')) === 'found' && str(dm!.get('lost')) === 'found', 10_000, 'every member has it');
    expect(da!.digest().equals(dv!.digest())).toBe(true);
  });

  it('syncInterval is validated; close() stops the timer', async () => {
    const [a] = await swarmOf(1);
    expect(() => new SyncDict(a!, { syncInterval: -1 })).toThrow(InvalidArgumentError);
    const d = new SyncDict(a!, { syncInterval: 50 });
    d.close();
  });
});

describe('synced dict: forged and clock-abusing writes', () => {
  it('a forged lease owner, a far-future lease and a remote lease violation are rejected or lose everywhere', async () => {
    const clock = new Clock();
    const [a, m, v] = await swarmOf(3);
    const [da, dm, dv] = dicts([a!, m!, v!], { now: clock.now });
    await da!.set('k', 'owned by A');
    await until(() => str(dv!.get('k')) === 'owned by A' && str(dm!.get('k')) === 'owned by A');
    const rejected: string[] = [];
    dv!.on('rejected', (why) => rejected.push(why));
    const base = { namespace: dv!.namespace, since: clock.t, ts: clock.t, tombstone: false, key: Buffer.from('k') };
    // 1. Forged owner: M signs, but claims A's key as owner.
    const forged = Buffer.from(signRecord(m!.identity, m!.protocolHash, { ...base, value: Buffer.from('forged') }).raw);
    a!.identity.publicKey.copy(forged, 32);
    // 2. A ten-year lease: validly signed by M, timestamp far in the future.
    const far = clock.t + 10 * 365 * 86_400_000;
    const future = signRecord(m!.identity, m!.protocolHash, { ...base, since: far, ts: far, value: Buffer.from('mine for 10 years') }).raw;
    inject(m!, dv!, [forged, future]);
    await until(() => rejected.length === 2, 3000, 'two rejections');
    expect(rejected.sort()).toEqual(['bad signature', 'timestamp in the future']);
    // 3. A validly signed write by M while A's lease is live: every member keeps A's value.
    clock.t += 1000;
    const violation = signRecord(m!.identity, m!.protocolHash, { ...base, since: clock.t, ts: clock.t, value: Buffer.from('stolen') }).raw;
    inject(m!, dv!, [violation]);
    await delay(200);
    for (const d of [da!, dv!]) {
      expect(str(d.get('k'))).toBe('owned by A');
      expect(d.meta('k')?.owner).toBe(a!.idHex);
    }
    await da!.set('k', 'still mine');
    await until(() => str(dv!.get('k')) === 'still mine');
  });

  it('a flood of claims on a held key from throw-away keys cannot push out the holder\'s record (MAX_OWNERS_PER_KEY)', async () => {
    const clock = new Clock();
    const [a, m, v] = await swarmOf(3);
    const [da, dm, dv] = dicts([a!, m!, v!], { now: clock.now });
    await da!.set('k2', 'owned by A');
    await until(() => str(dv!.get('k2')) === 'owned by A' && str(dm!.get('k2')) === 'owned by A');
    clock.t += 1000;
    const flood: Buffer[] = [];
    for (let i = 0; i < MAX_OWNERS_PER_KEY + 10; i++) {
      const id = Identity.generate();
      flood.push(signRecord(id, m!.protocolHash, { namespace: dv!.namespace, since: clock.t + i, ts: clock.t + i, tombstone: false, key: Buffer.from('k2'), value: Buffer.from(`squat ${i}`) }).raw);
    }
    for (let i = 0; i < flood.length; i += 16) inject(m!, dv!, flood.slice(i, i + 16));
    await delay(500);
    for (const d of [da!, dm!, dv!]) {
      expect(str(d.get('k2'))).toBe('owned by A');
      expect(d.meta('k2')?.owner).toBe(a!.idHex);
    }
    await da!.set('k2', 'still mine');
    await until(() => str(dv!.get('k2')) === 'still mine' && str(dm!.get('k2')) === 'still mine');
  });

  it('malformed sync messages are reported and change nothing', async () => {
    const [a, v] = await swarmOf(2);
    const [da, dv] = dicts([a!, v!]);
    await da!.set('k', 'v');
    await until(() => dv!.has('k'));
    const rejected: string[] = [];
    dv!.on('rejected', (why) => rejected.push(why));
    a!.broadcastInternal(KIND_SYNC, Buffer.concat([Buffer.from([1]), dv!.namespace, Buffer.from([0, 5, 0, 0, 0, 9, 1])]));
    a!.broadcastInternal(KIND_SYNC, Buffer.concat([Buffer.from([9]), dv!.namespace]));
    await until(() => rejected.length === 2);
    expect(str(dv!.get('k'))).toBe('v');
    await da!.set('k2', 'still syncing');
    await until(() => dv!.has('k2'));
  });
});
