/**
 * A lossy UDP relay for the reliable-stream tests: two sockets on 127.0.0.1, one facing each
 * end. A sends to `forA`, the relay forwards from `forB`'s socket to B, and back. Each
 * datagram is dropped, duplicated or delayed (reordered) at random, from a seeded PRNG so a
 * failure can be replayed.
 */
import { createSocket, type Socket } from 'node:dgram';
import { afterEach } from 'vitest';
import type { Endpoint } from '../src/interfaces/endpoint.js';
import { pipeOpen, SUB_ALL, type UdpPipe } from '../src/pipes/index.js';

export interface LossyRelayOptions {
  /** Probability of dropping a datagram. */
  loss?: number;
  /** Probability of sending a datagram twice. */
  duplicate?: number;
  /** Probability of delaying a datagram (so later ones overtake it). */
  reorder?: number;
  /** Largest extra delay of a delayed datagram (ms). */
  maxDelayMs?: number;
  /** PRNG seed. */
  seed?: number;
}

export interface RelayStats {
  forwarded: number;
  dropped: number;
  duplicated: number;
  delayed: number;
}

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class LossyRelay {
  readonly stats: RelayStats = { forwarded: 0, dropped: 0, duplicated: 0, delayed: 0 };
  private readonly timers = new Set<NodeJS.Timeout>();
  private constructor(
    private readonly sa: Socket,
    private readonly sb: Socket,
    private readonly a: Endpoint,
    private readonly b: Endpoint,
    private readonly o: Required<LossyRelayOptions>,
  ) {
    const rnd = prng(o.seed);
    const forward = (out: Socket, to: Endpoint) => (msg: Buffer): void => {
      if (rnd() < this.o.loss) {
        this.stats.dropped++;
        return;
      }
      const copies = rnd() < this.o.duplicate ? 2 : 1;
      if (copies === 2) this.stats.duplicated++;
      for (let i = 0; i < copies; i++) {
        if (rnd() < this.o.reorder) {
          this.stats.delayed++;
          const t = setTimeout(() => {
            this.timers.delete(t);
            out.send(msg, to.port, to.host);
          }, 1 + rnd() * this.o.maxDelayMs);
          this.timers.add(t);
        } else out.send(msg, to.port, to.host);
        this.stats.forwarded++;
      }
    };
    sa.on('message', forward(sb, b));
    sb.on('message', forward(sa, a));
  }

  /** Starts a relay between `a` and `b` (both on 127.0.0.1). */
  static async start(a: Endpoint, b: Endpoint, opts: LossyRelayOptions = {}): Promise<LossyRelay> {
    const bind = (): Promise<Socket> =>
      new Promise((resolve) => {
        const s = createSocket('udp4');
        s.bind(0, '127.0.0.1', () => resolve(s));
      });
    const [sa, sb] = await Promise.all([bind(), bind()]);
    for (const s of [sa, sb]) {
      s.setRecvBufferSize(4 << 20);
      s.setSendBufferSize(4 << 20);
    }
    return new LossyRelay(sa, sb, a, b, {
      loss: opts.loss ?? 0,
      duplicate: opts.duplicate ?? 0,
      reorder: opts.reorder ?? 0,
      maxDelayMs: opts.maxDelayMs ?? 5,
      seed: opts.seed ?? 1,
    });
  }

  /** Where A sends (A's `remote`). */
  get forA(): Endpoint {
    return { host: '127.0.0.1', port: this.sa.address().port, family: 4 };
  }

  /** Where B sends (B's `remote`). */
  get forB(): Endpoint {
    return { host: '127.0.0.1', port: this.sb.address().port, family: 4 };
  }

  /** Changes the impairments on the fly. */
  set(o: LossyRelayOptions): void {
    Object.assign(this.o, o);
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.all([new Promise<void>((r) => this.sa.close(() => r())), new Promise<void>((r) => this.sb.close(() => r()))]);
  }
}

/**
 * The set-up of the reliable-stream suites: a cleanup list run (in reverse) after each test,
 * and `udp()`, a UDP pipe on 127.0.0.1 with 4 MiB socket buffers and no default subscription
 * (the stream takes its datagrams), closed after the test. Call at the top level of a file.
 */
export function useStreamSockets(): { cleanup: (() => unknown)[]; udp(): Promise<UdpPipe> } {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  const udp = async (): Promise<UdpPipe> => {
    const p = (await pipeOpen('udp', undefined, { bind: '127.0.0.1:0', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 })) as UdpPipe;
    p.unsubscribe(SUB_ALL);
    cleanup.push(() => p.close());
    return p;
  };
  return { cleanup, udp };
}
