/**
 * js-libp2p (TCP + Noise + Yamux) as a comparison peer for bench/secure.ts: the issue's
 * handshake target is "≥ 10× js-libp2p's connect rate measured the same way", so the bench
 * measures js-libp2p in the same run, in the same two processes, the same way (sequential
 * dial + close on loopback), instead of relying only on a figure taken on another day.
 *
 * js-libp2p 3.x needs `Promise.withResolvers` (Node ≥ 22); on Node 20 it gets the polyfill
 * below. Its per-host inbound rate limit (5 connections/s by default) and connection caps
 * are lifted so that the protocol, not the limiter, is measured. The packages are
 * devDependencies, used only here.
 * @module
 */

type Resolvers<T> = { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void };

function polyfill(): void {
  const P = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> };
  if (typeof P.withResolvers === 'function') return;
  P.withResolvers = function withResolvers<T>(): Resolvers<T> {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((a, b) => {
      resolve = a;
      reject = b;
    });
    return { promise, resolve, reject };
  };
}

/** The slice of a libp2p node this bench uses. */
export interface BenchLibp2p {
  /** Listening multiaddr (servers). */
  addr: string | undefined;
  /** Inbound connections opened so far. */
  inbound(): number;
  /** Dials `addr` (a new connection: none stays open between dials), then closes it. */
  dialAndClose(addr: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a libp2p node; `listen` = listen on 127.0.0.1 (a server). */
export async function startLibp2p(listen: boolean): Promise<BenchLibp2p> {
  polyfill();
  const [{ createLibp2p }, { tcp }, { noise }, { yamux }, { multiaddr }] = await Promise.all([
    import('libp2p'),
    import('@libp2p/tcp'),
    import('@chainsafe/libp2p-noise'),
    import('@chainsafe/libp2p-yamux'),
    import('@multiformats/multiaddr'),
  ]);
  const node = await createLibp2p({
    addresses: { listen: listen ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { inboundConnectionThreshold: 1e9, maxIncomingPendingConnections: 1e6, maxConnections: 1e6 },
  });
  let inbound = 0;
  node.addEventListener('connection:open', (e) => {
    if (e.detail.direction === 'inbound') inbound++;
  });
  return {
    addr: listen ? node.getMultiaddrs()[0]?.toString() : undefined,
    inbound: () => inbound,
    dialAndClose: async (addr: string) => {
      const c = await node.dial(multiaddr(addr));
      await c.close();
    },
    stop: async () => {
      await node.stop();
    },
  };
}
