import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { PipeClosedError, TimeoutError } from '../src/errors.js';
import {
  DhtConnection, DhtNode, MAX_MESSAGE_BYTES, encodeMessage, generateSigner, idToHex,
  type Contact, type DhtRequestHandler, type DhtResponse, type DhtTransport,
} from '../src/dht/index.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Two connections joined back to back, frames delivered on the next turn. */
function pair(a: Partial<ConstructorParameters<typeof DhtConnection>[0]> = {}, b: Partial<ConstructorParameters<typeof DhtConnection>[0]> = {}): [DhtConnection, DhtConnection] {
  const holder: { a?: DhtConnection; b?: DhtConnection } = {};
  holder.a = new DhtConnection({ ...a, send: (f) => void setImmediate(() => holder.b?.receive(f)) });
  holder.b = new DhtConnection({ ...b, send: (f) => void setImmediate(() => holder.a?.receive(f)) });
  return [holder.a, holder.b];
}

/** A DhtTransport over DhtConnections: what a pipe-based transport looks like. */
class Hub {
  readonly handlers = new Map<string, DhtRequestHandler | undefined>();
  readonly conns = new Map<string, DhtConnection>();
  transport(self: Contact): DhtTransport {
    const me = idToHex(self.id);
    return {
      onRequest: (h) => void this.handlers.set(me, h),
      request: (to, req, opts) => {
        const peer = idToHex(to.id);
        let c = this.conns.get(`${me}>${peer}`);
        if (!c) {
          const [mine, theirs] = pair(
            { handler: () => this.handlers.get(me), context: { remoteId: to.id } },
            { handler: () => this.handlers.get(peer), context: { remoteId: self.id } },
          );
          this.conns.set(`${me}>${peer}`, mine);
          this.conns.set(`${peer}>${me}`, theirs);
          c = mine;
        }
        return c.request(req, opts);
      },
    };
  }
}

function makeNode(hub: Hub, i: number): DhtNode {
  const signer = generateSigner();
  const id = new Uint8Array(createHash('sha256').update(signer.publicKey).digest());
  const contact: Contact = { id, host: `192.168.0.${i + 1}`, port: 7000, family: 4, publicKey: signer.publicKey };
  return new DhtNode({ transport: hub.transport(contact), contact, signer, requestTimeout: 500, republishInterval: 0, refreshInterval: 0 });
}

describe('DhtConnection', () => {
  it('carries a small DHT over multiplexed channels', async () => {
    const hub = new Hub();
    const nodes = Array.from({ length: 6 }, (_, i) => makeNode(hub, i));
    for (const n of nodes.slice(1)) await n.join([(nodes[0] as DhtNode).contact]);
    await (nodes[2] as DhtNode).set('over-pipes', { ok: true });
    for (const n of nodes) expect(await n.get('over-pipes')).toEqual({ ok: true });
    await Promise.all(nodes.map((n) => n.close()));
  });

  it('matches concurrent responses by txid and drops late ones', async () => {
    const responder = new Uint8Array(32).fill(1);
    let delay = 0;
    const [a] = pair({}, {
      handler: () => async () => {
        const d = delay;
        await new Promise((r) => setTimeout(r, d));
        return { type: 'PONG', responder } satisfies DhtResponse;
      },
    });
    const rs = await Promise.all(Array.from({ length: 50 }, () => a.request({ type: 'PING' }, { timeout: 1000 })));
    expect(rs.every((r) => r.type === 'PONG')).toBe(true);
    delay = 100;
    await expect(a.request({ type: 'PING' }, { timeout: 20 })).rejects.toBeInstanceOf(TimeoutError);
    await new Promise((r) => setTimeout(r, 150)); // the late reply arrives and is ignored
    expect(a.pending).toBe(0);
    expect(a.closed).toBe(false);
  });

  it('drops malformed, truncated and oversized frames, then gives up on the peer', async () => {
    const responder = new Uint8Array(32).fill(2);
    const misbehaving: unknown[] = [];
    const [a, b] = pair(
      { maxMalformed: 3, onMisbehaving: (e) => misbehaving.push(e) },
      { handler: () => async () => ({ type: 'PONG', responder }) },
    );
    const good = encodeMessage({ type: 'PING' }, 1);
    a.receive(good.subarray(0, 4)); // truncated
    a.receive(new Uint8Array(MAX_MESSAGE_BYTES + 1)); // oversized
    a.receive(new Uint8Array([9, 9, 9])); // garbage
    expect(a.closed).toBe(false);
    expect((await a.request({ type: 'PING' }, { timeout: 1000 })).type).toBe('PONG');
    const waiting = a.request({ type: 'PING' }, { timeout: 1000 });
    a.receive(new Uint8Array([1, 0x99])); // fourth strike
    await expect(waiting).rejects.toBeInstanceOf(PipeClosedError);
    expect(misbehaving).toHaveLength(1);
    expect(a.closed).toBe(true);
    expect(b.closed).toBe(false);
    await tick();
  });

  it('bounds pending and concurrently served requests', async () => {
    const responder = new Uint8Array(32).fill(3);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const [a] = pair({ maxPending: 4 }, {
      maxServing: 2,
      localId: responder,
      handler: () => async () => {
        await gate;
        return { type: 'PONG', responder };
      },
    });
    const reqs = Array.from({ length: 4 }, () => a.request({ type: 'PING' }, { timeout: 2000 }).then((r) => r.type, (e: Error) => e.message));
    await expect(a.request({ type: 'PING' })).rejects.toMatchObject({ code: 'ERR_DHT_BUSY' });
    await new Promise((r) => setTimeout(r, 20));
    release();
    const types = await Promise.all(reqs);
    expect(types.filter((t) => t === 'ERROR')).toHaveLength(2);
    expect(types.filter((t) => t === 'PONG')).toHaveLength(2);
  });
});
