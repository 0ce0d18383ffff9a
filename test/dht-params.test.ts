/**
 * DHT parameters on the in-memory network: the defaults k = 20 and α = 3, lookups that keep
 * exactly α FIND_NODE requests in flight (parallel, and bounded), and bucket refresh at node
 * level (a stale bucket is refreshed by a lookup of an id in its range, which finds contacts
 * the node did not have).
 */
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_ALPHA, DEFAULT_K, DEFAULT_REFRESH_INTERVAL, DhtNode, bucketIndex, createMemoryDhtTestnet, generateSigner, randomId,
  randomIdInBucket, type DhtId, type DhtRequest, type DhtRequestHandler, type DhtRequestOptions, type DhtResponse, type DhtTransport,
  type MemoryDhtTestnet, type MemoryTransport, type Contact,
} from '../src/dht/index.js';

const FAST = { requestTimeout: 2000, republishInterval: 0, refreshInterval: 0 } as const;
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((x) => x.close()));
});
async function testnet(n: number): Promise<MemoryDhtTestnet> {
  const net = await createMemoryDhtTestnet(n, FAST);
  open.push(net);
  return net;
}
function track(node: DhtNode): DhtNode {
  open.push(node);
  return node;
}

/**
 * Wraps a memory transport: records every FIND_NODE target, counts FIND_NODE requests in
 * flight (and the maximum), and holds each reply back for `delayMs` before handing it over.
 */
class RecordingTransport implements DhtTransport {
  inflight = 0;
  maxInflight = 0;
  readonly targets: DhtId[] = [];
  constructor(
    readonly inner: MemoryTransport,
    /** Reply delay, ms; may be changed at any time. */
    public delayMs = 0,
  ) {}

  get contact(): Contact {
    return this.inner.contact;
  }

  async request(to: Contact, req: DhtRequest, opts: DhtRequestOptions): Promise<DhtResponse> {
    if (req.type !== 'FIND_NODE') return this.inner.request(to, req, opts);
    this.targets.push(req.target);
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      const res = await this.inner.request(to, req, opts);
      if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
      return res;
    } finally {
      this.inflight--;
    }
  }

  onRequest(handler: DhtRequestHandler | undefined): void {
    this.inner.onRequest(handler);
  }

  reset(): void {
    this.maxInflight = this.inflight;
    this.targets.length = 0;
  }
}

/** A node with a recording transport on `net`'s network; `id` defaults to SHA-256 of a fresh key. */
function recordingNode(net: MemoryDhtTestnet, opts: { id?: DhtId; alpha?: number; now?: () => number; refreshInterval?: number } = {}): { node: DhtNode; rec: RecordingTransport } {
  const signer = generateSigner();
  const id = opts.id ?? new Uint8Array(createHash('sha256').update(signer.publicKey).digest());
  const inner = net.network.createTransport(id, opts.id ? {} : { publicKey: signer.publicKey });
  const rec = new RecordingTransport(inner);
  const node = track(
    new DhtNode({
      ...FAST,
      transport: rec,
      contact: inner.contact,
      ...(opts.id ? {} : { signer }),
      ...(opts.alpha !== undefined ? { alpha: opts.alpha } : {}),
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.refreshInterval !== undefined ? { refreshInterval: opts.refreshInterval } : {}),
    }),
  );
  open.push({ close: async () => inner.close() });
  return { node, rec };
}

describe('DHT defaults', () => {
  it('k = 20 and α = 3, and a node built without options uses them', async () => {
    expect(DEFAULT_K).toBe(20);
    expect(DEFAULT_ALPHA).toBe(3);
    expect(DEFAULT_REFRESH_INTERVAL).toBe(60 * 60 * 1000);
    const net = await testnet(1);
    const n = net.nodes[0] as DhtNode;
    expect(n.k).toBe(DEFAULT_K);
    expect(n.alpha).toBe(DEFAULT_ALPHA);
  });
});

describe('DHT lookup parallelism', () => {
  it('keeps exactly α FIND_NODE requests in flight during one lookup (delayed replies)', async () => {
    const net = await testnet(40);
    const { node, rec } = recordingNode(net);
    await node.join([(net.nodes[0] as DhtNode).contact]);
    rec.delayMs = 5;
    expect(node.table.size).toBeGreaterThan(DEFAULT_ALPHA); // enough seeds to fill α slots
    rec.reset();
    const res = await node.lookup(randomId());
    expect(rec.inflight).toBe(0);
    expect(res.messages).toBe(rec.targets.length);
    expect(res.messages).toBeGreaterThan(DEFAULT_ALPHA); // more queries than slots: the bound mattered
    expect(rec.maxInflight).toBe(DEFAULT_ALPHA);
    expect(node.alpha).toBe(DEFAULT_ALPHA);
  });

  for (const alpha of [1, 5]) {
    it(`alpha: ${alpha} keeps exactly ${alpha} in flight`, async () => {
      const net = await testnet(30);
      const { node, rec } = recordingNode(net, { alpha });
      await node.join([(net.nodes[0] as DhtNode).contact]);
      rec.delayMs = 5;
      expect(node.table.size).toBeGreaterThan(alpha);
      rec.reset();
      const res = await node.lookup(randomId());
      expect(res.messages).toBeGreaterThan(alpha);
      expect(rec.maxInflight).toBe(alpha);
    });
  }
});

describe('DHT bucket refresh', () => {
  /** Contacts of `node`'s table in bucket `i`, as hex ids. */
  function inBucket(node: DhtNode, i: number): string[] {
    return node.table.contacts().filter((c) => bucketIndex(node.id, c.id) === i).map((c) => Buffer.from(c.id).toString('hex'));
  }

  it('refresh() looks up an id in the range of the stale bucket only, and learns contacts it did not have there', async () => {
    const net = await testnet(24);
    const boot = net.nodes[0] as DhtNode;
    // Our id shares 155 leading bits with the bootstrap node: it sits in our bucket 100, and
    // about half of the network sits in our bucket 255, which we know nothing of.
    const id = randomIdInBucket(boot.id, 100);
    let t = 1_000_000;
    const refreshInterval = 60_000;
    const { node, rec } = recordingNode(net, { id, now: () => t, refreshInterval });
    expect(node.table.add(boot.contact)).toBe('added');
    const far = net.nodes.filter((n) => bucketIndex(id, n.id) === 255).map((n) => Buffer.from(n.id).toString('hex'));
    expect(far.length).toBeGreaterThan(0);
    expect(inBucket(node, 255)).toEqual([]);
    // Time passes; every bucket except 255 is looked up meanwhile: 255 alone is stale.
    t += refreshInterval;
    for (let i = 100; i < 255; i++) node.table.touch(randomIdInBucket(id, i));
    expect(node.table.bucketsToRefresh(refreshInterval)).toEqual([255]);
    expect(await node.refresh()).toBe(1);
    expect(rec.targets.length).toBeGreaterThan(0);
    for (const target of rec.targets) expect(bucketIndex(id, target)).toBe(255);
    const learned = inBucket(node, 255);
    expect(learned.length).toBeGreaterThan(0);
    for (const hex of learned) expect(far).toContain(hex);
    expect(node.table.lastLookup(255)).toBe(t);
    expect(node.table.bucketsToRefresh(refreshInterval)).toEqual([]);
    // Nothing is stale now: refresh() does nothing.
    rec.reset();
    expect(await node.refresh()).toBe(0);
    expect(rec.targets).toEqual([]);
  });

  it('with a small refreshInterval the timer refreshes the stale far bucket by itself', async () => {
    const net = await testnet(24);
    const boot = net.nodes[0] as DhtNode;
    const id = randomIdInBucket(boot.id, 100);
    const { node, rec } = recordingNode(net, { id, refreshInterval: 50 });
    node.table.add(boot.contact);
    expect(inBucket(node, 255)).toEqual([]);
    const deadline = performance.now() + 20_000;
    while (inBucket(node, 255).length === 0 || !rec.targets.some((x) => bucketIndex(id, x) === 255)) {
      if (performance.now() > deadline) expect.fail('the refresh timer never looked up bucket 255');
      await new Promise((r) => setTimeout(r, 20));
    }
    const far = new Set(net.nodes.filter((n) => bucketIndex(id, n.id) === 255).map((n) => Buffer.from(n.id).toString('hex')));
    for (const hex of inBucket(node, 255)) expect(far.has(hex)).toBe(true);
  });
});
