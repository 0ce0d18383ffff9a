/**
 * Swarm adversarial tests on loopback: forged senders, modified relayed messages, clock
 * abuse, replays, malformed / truncated / oversized frames. The attacker is a member with a
 * valid link that writes raw frames on it.
 */
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { SecurePipe } from '../src/crypto/secure-pipe.js';
import type { TcpPipe } from '../src/pipes/tcp.js';
import {
  FRAME_BCAST, FRAME_DATA, KIND_USER, MAX_FRAME_SIZE, MAX_LINK_MALFORMED, buildEnvelope, decodeEnvelope, encodeMembers, signAnnouncement,
  type SwarmPeer,
} from '../src/swarm/index.js';
import { boundPeer, delay, linkBetween, swarmOf, until } from './swarm-helpers.js';

/** Origin key offset in a DATA/BCAST frame, and payload offset of a frame without excludes. */
const ORIGIN_OFFSET = 7;

function frameFrom(signer: SwarmPeer, target: SwarmPeer | undefined, payload: string, timestamp = Date.now()): Buffer {
  return buildEnvelope(signer.identity, signer.protocolHash, {
    type: target ? FRAME_DATA : FRAME_BCAST,
    kind: KIND_USER,
    ...(target ? { target: target.id } : {}),
    payload: Buffer.from(payload),
    timestamp,
  }).raw;
}

async function nothingDelivered(p: SwarmPeer, ms = 150): Promise<void> {
  await delay(ms);
  expect(p.queued).toBe(0);
}

describe('swarm security: signed messages', () => {
  it('a forged sender (origin key of another node) is rejected, directed and broadcast', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    for (const target of [v, undefined]) {
      const f = Buffer.from(frameFrom(m, target, 'I am A'));
      a.identity.publicKey.copy(f, ORIGIN_OFFSET);
      linkBetween(m, v).send(f);
    }
    await until(() => v.stats.invalid === 2, 2000, 'two rejections');
    await nothingDelivered(v);
    await nothingDelivered(a);
  });

  it('a relay cannot alter a message; the genuine copy still arrives once; replays are dropped', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const genuine = frameFrom(a, v, 'pay 10');
    const env = decodeEnvelope(genuine);
    const tampered = Buffer.from(genuine);
    tampered[genuine.length - 64 - 1] = '9'.charCodeAt(0); // last payload byte: 'pay 19'
    expect(decodeEnvelope(tampered).payload.toString()).toBe('pay 19');
    linkBetween(m, v).send(tampered);
    await until(() => v.stats.invalid === 1);
    await nothingDelivered(v);
    // The tampered copy did not poison the seen-cache: the genuine one is delivered.
    linkBetween(m, v).send(genuine);
    const got = await v.recv({ timeout: 2000 });
    expect(got.data.toString()).toBe('pay 10');
    expect(got.src.idHex).toBe(a.idHex);
    expect(got.msgId.equals(env.msgId)).toBe(true);
    expect(got.hops).toBe(0);
    // Replaying it (even with a rewritten routing header) delivers nothing new.
    const replay = Buffer.from(genuine);
    replay[1] = 3;
    linkBetween(m, v).send(replay);
    await until(() => v.stats.duplicates >= 1);
    await nothingDelivered(v);
  });

  it('a replay after its id was evicted from a full seen-cache is still refused (per-origin floor); other origins unaffected', async () => {
    const [a, m, v] = (await swarmOf(3, { seenCacheSize: 4 })) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const t0 = Date.now() - 1000;
    const first = frameFrom(a, v, 'pay 10', t0);
    linkBetween(m, v).send(first);
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('pay 10');
    // Fill v's cache with newer messages of the same origin: the first id is evicted.
    for (let i = 1; i <= 6; i++) linkBetween(m, v).send(frameFrom(a, v, `filler ${i}`, t0 + i));
    for (let i = 1; i <= 6; i++) expect((await v.recv({ timeout: 2000 })).data.toString()).toBe(`filler ${i}`);
    expect(v.core.router.seenData.evicted).toBeGreaterThanOrEqual(3);
    const dups = v.stats.duplicates;
    linkBetween(m, v).send(first);
    await until(() => v.stats.duplicates > dups, 2000, 'replay counted as a duplicate');
    await nothingDelivered(v);
    // Another origin whose clock runs behind still gets through.
    linkBetween(m, v).send(frameFrom(m, v, 'from M, old clock', t0 - 500));
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('from M, old clock');
  });

  it('a relay cannot censor a message by publishing its own under the same message id', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const genuine = frameFrom(a, v, 'from A');
    const id = decodeEnvelope(genuine).msgId;
    const squat = buildEnvelope(m.identity, m.protocolHash, { type: FRAME_DATA, kind: KIND_USER, target: v.id, payload: Buffer.from('from M'), timestamp: Date.now(), msgId: Buffer.from(id) });
    linkBetween(m, v).send(squat.raw);
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('from M');
    linkBetween(m, v).send(genuine);
    const got = await v.recv({ timeout: 2000 });
    expect(got.data.toString()).toBe('from A');
    expect(got.src.idHex).toBe(a.idHex);
  });

  it('a message to a made-up id is not flooded through the swarm', async () => {
    const [m, v, w] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const f = Buffer.from(buildEnvelope(m.identity, m.protocolHash, { type: FRAME_DATA, kind: KIND_USER, target: Buffer.alloc(32, 0xab), payload: Buffer.from('x'), timestamp: Date.now() }).raw);
    f[2] = 1; // ask for flood mode
    const before = v.stats.framesSent.data + w.stats.framesSent.data;
    linkBetween(m, v).send(f);
    await delay(150);
    expect(v.stats.framesSent.data + w.stats.framesSent.data).toBe(before);
    expect(v.stats.invalid).toBe(0);
  });

  it('a far-future or stale timestamp is rejected, even when correctly signed', async () => {
    const [m, v] = (await swarmOf(2)) as [SwarmPeer, SwarmPeer];
    const now = Date.now();
    linkBetween(m, v).send(frameFrom(m, v, 'future', now + 60 * 60 * 1000));
    linkBetween(m, v).send(frameFrom(m, undefined, 'ten years', now + 10 * 365 * 86_400_000));
    linkBetween(m, v).send(frameFrom(m, v, 'stale', now - 10 * 60 * 1000));
    await until(() => v.stats.invalid === 3);
    await nothingDelivered(v);
    linkBetween(m, v).send(frameFrom(m, v, 'fine', now));
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('fine');
  });

  it('a forged member announcement is rejected; nobody adopts it', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const ann = Buffer.from(signAnnouncement(m.identity, m.protocolHash, { host: '127.0.0.1', port: 9, family: 4 }, Date.now() + 1000));
    a.identity.publicKey.copy(ann, 0); // claim to be A, listening on port 9
    for (const f of encodeMembers([ann])) linkBetween(m, v).send(f);
    await until(() => v.stats.invalid >= 1);
    expect(v.members.find((p) => p.idHex === a.idHex)?.endpoint).toEqual(a.endpoint);
  });
});

describe('swarm security: malformed input', () => {
  it('malformed and truncated frames are dropped; the link is reset only past the limit; others unaffected', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const link = linkBetween(m, v);
    const good = frameFrom(m, v, 'x');
    const bad = [
      Buffer.from([99, 1, 2, 3]), // unknown frame type
      Buffer.alloc(0), // empty
      good.subarray(0, good.length >> 1), // truncated DATA
      Buffer.concat([good, Buffer.from([0])]), // trailing byte
      Buffer.from([2, 0, 0xff, 0xff]), // MEMBERS claiming 65535 entries
      Buffer.from([FRAME_DATA, 200, 0, 0, 0]), // hops over the limit, then truncated
      Buffer.from([5, 5]), // PING with a body
    ];
    for (const f of bad) link.send(f);
    await until(() => v.stats.invalid === bad.length, 2000, 'all malformed frames counted');
    expect(v.core.links.get(m.idHex)).toBeDefined(); // under the limit: still linked
    await a.send(v, 'still fine');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('still fine');
    for (let i = 0; i <= MAX_LINK_MALFORMED; i++) link.send(Buffer.from([77]));
    await until(() => !v.core.links.get(m.idHex) || v.core.links.get(m.idHex) !== link, 3000, 'link reset');
    await a.send(v, 'after reset');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('after reset');
  });

  it('an oversized encrypted frame closes only that link', async () => {
    const [a, m, v] = (await swarmOf(3)) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const link = linkBetween(m, v);
    const sp = link.io.raw as SecurePipe;
    // The attacker lifts its own sending limit; the victim keeps its 1 MiB limit.
    (sp as unknown as { maxMessageSize: number }).maxMessageSize = 4 * MAX_FRAME_SIZE;
    (sp as unknown as { channel: { maxMessageSize: number } }).channel.maxMessageSize = 4 * MAX_FRAME_SIZE;
    const closed = new Promise<Error | undefined>((r) => link.io.onClose(r));
    await sp.send(Buffer.alloc(2 * MAX_FRAME_SIZE, 1));
    await closed;
    await until(() => v.core.links.get(m.idHex) !== link, 3000);
    await a.send(v, 'alive');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('alive');
    expect(a.core.links.get(v.idHex)).toBeDefined();
  });

  it('plaintext mode: an oversized length prefix or a truncated stream closes only that link', async () => {
    const proto = { name: 'plain-sec', encrypted: false };
    const [a, m, v] = (await swarmOf(3, { protocol: proto })) as [SwarmPeer, SwarmPeer, SwarmPeer];
    const link = linkBetween(m, v);
    const tcp = link.io.raw as TcpPipe;
    const closed = new Promise<Error | undefined>((r) => link.io.onClose(r));
    await tcp.send(Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]));
    await closed;
    await a.send(v, 'ok');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('ok');
    // A second attacker link dies mid-frame.
    const m2 = await boundPeer({ protocol: proto });
    await m2.connect(v.endpoint);
    const l2 = linkBetween(m2, v);
    const victimSide = linkBetween(v, m2);
    const raw2 = l2.io.raw as TcpPipe;
    const f = frameFrom(m2, v, 'half');
    const hdr = Buffer.alloc(4);
    hdr.writeUInt32BE(f.length);
    await raw2.send(Buffer.concat([hdr, f.subarray(0, 10)]));
    raw2.socket.destroy();
    await until(() => victimSide.io.closed, 3000, 'the victim side of that link closed');
    await a.send(v, 'ok2');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('ok2');
  });

  it('garbage and silence on the listening port cost nothing but that connection', async () => {
    const [a, v] = (await swarmOf(2, { linkTimeout: 300 })) as [SwarmPeer, SwarmPeer];
    const socks = [0, 1, 2].map(() => connect(v.endpoint.port, '127.0.0.1').on('error', () => undefined));
    socks[0]!.write(Buffer.from([0, 0, 0, 40, 1, 2, 3])); // a plausible length, then garbage
    socks[1]!.write(Buffer.from([0xff, 0xff, 0xff, 0xff])); // impossible preamble length
    // socks[2] says nothing: the setup timeout ends it.
    await until(() => v.stats.setupFailures + v.stats.protocolMismatches >= 3, 3000, 'three refused setups');
    for (const s of socks) s.destroy();
    await a.send(v, 'unaffected');
    expect((await v.recv({ timeout: 2000 })).data.toString()).toBe('unaffected');
  });
});
