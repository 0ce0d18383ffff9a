/**
 * Clock-skew boundaries, with fixed clocks and made-up timestamps (no sleeping): for each layer
 * that checks timestamps, a timestamp at now + allowance − 1 s is accepted and one at
 * now + allowance + 1 s is rejected — the synced dict (its default allowance), swarm messages
 * and member announcements, and DHT records (pure check, STORE, and FIND_VALUE replies).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import {
  MAX_CLOCK_SKEW_MS, createMemoryDhtTestnet, createRecord, decodeMessage, encodeMessage, generateSigner, isRecordValid, keyToId,
  type DhtNode, type DhtRecord, type MemoryDhtTestnet,
} from '../src/dht/index.js';
import {
  FRAME_BCAST, FRAME_DATA, KIND_USER, MAX_CLOCK_SKEW, MAX_MESSAGE_AGE, buildEnvelope, decodeAnnouncement, resolveProtocol,
  signAnnouncement, type SwarmPeer,
} from '../src/swarm/index.js';
import { envelopeProblem } from '../src/swarm/envelope.js';
import { verifyAnnouncement } from '../src/swarm/member.js';
import { DEFAULT_MAX_CLOCK_SKEW, KIND_SYNC, SyncDict, encodeRecordList, recordProblem, signRecord } from '../src/sync/index.js';
import { boundPeer, delay, linkBetween, until } from './swarm-helpers.js';

const T = 1_700_000_000_000;
const SECOND = 1000;

describe('synced dict: default clock-skew allowance', () => {
  const id = Identity.generate();
  const ph = resolveProtocol().hash;
  const ns = Buffer.alloc(32, 1);
  const rec = (ts: number, key = 'k') => signRecord(id, ph, { namespace: ns, since: ts, ts, tombstone: false, key: Buffer.from(key), value: Buffer.from('v') });

  it('recordProblem: accepted at now + allowance − 1 s, rejected at now + allowance + 1 s', () => {
    expect(DEFAULT_MAX_CLOCK_SKEW).toBe(30_000);
    expect(recordProblem(rec(T + DEFAULT_MAX_CLOCK_SKEW - SECOND), ph, T, DEFAULT_MAX_CLOCK_SKEW)).toBeUndefined();
    expect(recordProblem(rec(T + DEFAULT_MAX_CLOCK_SKEW), ph, T, DEFAULT_MAX_CLOCK_SKEW)).toBeUndefined();
    expect(recordProblem(rec(T + DEFAULT_MAX_CLOCK_SKEW + SECOND), ph, T, DEFAULT_MAX_CLOCK_SKEW)).toBe('timestamp in the future');
  });

  it('a dict with the default options takes a remote write at the edge and rejects one just past it', async () => {
    const m = await boundPeer();
    const v = await boundPeer();
    await m.connect(v.endpoint);
    const dv = new SyncDict(v, { now: () => T }); // default maxClockSkew
    const rejected: string[] = [];
    dv.on('rejected', (reason) => rejected.push(reason));
    const mk = (key: string, ts: number): Buffer =>
      signRecord(m.identity, m.protocolHash, { namespace: dv.namespace, since: ts, ts, tombstone: false, key: Buffer.from(key), value: Buffer.from(key) }).raw;
    const raws = [mk('inside', T + DEFAULT_MAX_CLOCK_SKEW - SECOND), mk('outside', T + DEFAULT_MAX_CLOCK_SKEW + SECOND)];
    m.broadcastInternal(KIND_SYNC, Buffer.concat([Buffer.from([1]), dv.namespace, encodeRecordList(raws)]));
    await until(() => dv.has('inside') && rejected.length === 1, 3000, 'the write and the rejection');
    expect(dv.get('inside')?.toString()).toBe('inside');
    expect(dv.has('outside')).toBe(false);
    expect(rejected).toEqual(['timestamp in the future']);
  });
});

describe('swarm: message and announcement timestamps', () => {
  const id = Identity.generate();
  const ph = resolveProtocol().hash;
  const env = (timestamp: number, type: typeof FRAME_DATA | typeof FRAME_BCAST = FRAME_DATA) =>
    buildEnvelope(id, ph, { type, kind: KIND_USER, ...(type === FRAME_DATA ? { target: Buffer.alloc(32, 9) } : {}), payload: Buffer.from('x'), timestamp });

  it('envelopeProblem: future edge at now + MAX_CLOCK_SKEW, past edge at now − MAX_MESSAGE_AGE', () => {
    expect(MAX_CLOCK_SKEW).toBe(30_000);
    for (const type of [FRAME_DATA, FRAME_BCAST] as const) {
      expect(envelopeProblem(env(T + MAX_CLOCK_SKEW - SECOND, type), ph, T)).toBeUndefined();
      expect(envelopeProblem(env(T + MAX_CLOCK_SKEW + SECOND, type), ph, T)).toBe('timestamp in the future');
      expect(envelopeProblem(env(T - MAX_MESSAGE_AGE + SECOND, type), ph, T)).toBeUndefined();
      expect(envelopeProblem(env(T - MAX_MESSAGE_AGE - SECOND, type), ph, T)).toBe('message too old');
    }
  });

  it('verifyAnnouncement: a member announcement seq is accepted up to now + MAX_CLOCK_SKEW', () => {
    const ep = { host: '127.0.0.1', port: 4242, family: 4 as const };
    const ann = (seq: number) => decodeAnnouncement(signAnnouncement(id, ph, ep, seq));
    expect(verifyAnnouncement(ann(T + MAX_CLOCK_SKEW - SECOND), ph, T)).toBe(true);
    expect(verifyAnnouncement(ann(T + MAX_CLOCK_SKEW + SECOND), ph, T)).toBe(false);
  });

  it('a peer with a fixed clock delivers frames at the edges and rejects frames just past them', async () => {
    // The peer's clock stands still at the real time of the test's start (its neighbour's
    // announcements carry real times, which it must accept).
    const T = Date.now();
    const v = await boundPeer({ now: () => T });
    const m = await boundPeer();
    await m.connect(v.endpoint);
    await until(() => v.core.links.get(m.idHex) !== undefined, 3000, 'link');
    const frame = (text: string, timestamp: number, target: SwarmPeer | undefined): Buffer =>
      buildEnvelope(m.identity, m.protocolHash, { type: target ? FRAME_DATA : FRAME_BCAST, kind: KIND_USER, ...(target ? { target: target.id } : {}), payload: Buffer.from(text), timestamp }).raw;
    const link = linkBetween(m, v);
    for (const target of [v, undefined]) {
      link.send(frame('future-in', T + MAX_CLOCK_SKEW - SECOND, target));
      link.send(frame('future-out', T + MAX_CLOCK_SKEW + SECOND, target));
      link.send(frame('past-in', T - MAX_MESSAGE_AGE + SECOND, target));
      link.send(frame('past-out', T - MAX_MESSAGE_AGE - SECOND, target));
    }
    await until(() => v.queued === 4 && v.stats.invalid === 4, 3000, 'four deliveries and four rejections');
    await delay(50);
    const got: string[] = [];
    for (let msg = v.tryRecv(); msg; msg = v.tryRecv()) got.push(`${msg.broadcast ? 'bcast' : 'data'}:${msg.data}`);
    expect(got.sort()).toEqual(['bcast:future-in', 'bcast:past-in', 'data:future-in', 'data:past-in']);
    expect(v.stats.invalid).toBe(4);
  });
});

describe('DHT records: MAX_CLOCK_SKEW_MS', () => {
  const nets: MemoryDhtTestnet[] = [];
  afterEach(async () => {
    await Promise.all(nets.splice(0).map((n) => n.close()));
  });
  const signer = generateSigner();
  const rec = (key: string, timestamp: number): DhtRecord => createRecord(signer, { key, value: key, seq: 1, timestamp });

  it('verifyRecord: accepted at now + allowance − 1 s, rejected at now + allowance + 1 s', () => {
    expect(MAX_CLOCK_SKEW_MS).toBe(5 * 60 * 1000);
    expect(isRecordValid(rec('a', T + MAX_CLOCK_SKEW_MS - SECOND), { now: T })).toBe(true);
    expect(isRecordValid(rec('a', T + MAX_CLOCK_SKEW_MS + SECOND), { now: T })).toBe(false);
  });

  it('a node stores a record at the edge and refuses one just past it (STORE)', async () => {
    const net = await createMemoryDhtTestnet(1, { now: () => T, republishInterval: 0, refreshInterval: 0 });
    nets.push(net);
    const n = net.nodes[0] as DhtNode;
    const store = async (r: DhtRecord): Promise<string> => {
      const reply = await net.network.sendRaw(undefined, n.contact, encodeMessage({ type: 'STORE', record: r }, 5));
      const msg = decodeMessage(reply!).message;
      return msg.type === 'STORED' ? msg.status : msg.type;
    };
    expect(await store(rec('inside', T + MAX_CLOCK_SKEW_MS - SECOND))).toBe('ok');
    expect(await store(rec('outside', T + MAX_CLOCK_SKEW_MS + SECOND))).toBe('invalid');
    expect(n.localRecord('inside')).toBeDefined();
    expect(n.localRecord('outside')).toBeUndefined();
  });

  it('a lookup takes a FIND_VALUE record at the edge and drops one just past it', async () => {
    const net = await createMemoryDhtTestnet(2, { now: () => T, requestTimeout: 2000, republishInterval: 0, refreshInterval: 0, quorum: 1 });
    nets.push(net);
    const [reader, holder] = net.nodes as [DhtNode, DhtNode];
    const served = new Map<string, DhtRecord>([
      [Buffer.from(keyToId('inside')).toString('hex'), rec('inside', T + MAX_CLOCK_SKEW_MS - SECOND)],
      [Buffer.from(keyToId('outside')).toString('hex'), rec('outside', T + MAX_CLOCK_SKEW_MS + SECOND)],
    ]);
    // The holder answers every FIND_VALUE with the record we chose for that key.
    (net.transports[1] as (typeof net.transports)[number]).setRawResponder((frame) => {
      const { txid, message } = decodeMessage(frame);
      if (message.type === 'FIND_VALUE') {
        const record = served.get(Buffer.from(message.keyId).toString('hex'));
        return encodeMessage({ type: 'VALUE', responder: holder.id, contacts: [], ...(record ? { record } : {}) }, txid);
      }
      return message.type === 'PING' ? encodeMessage({ type: 'PONG', responder: holder.id }, txid) : undefined;
    });
    const rejectedBefore = reader.metrics.rejectedRecords;
    expect(await reader.get('inside', { default: null })).toBe('inside');
    expect(await reader.get('outside', { default: null })).toBeNull();
    expect(reader.metrics.rejectedRecords - rejectedBefore).toBe(1);
  });
});
