/**
 * Set-up shared by the P2P node suites on loopback (test/node-*.test.ts): nodes started
 * without port mapping and closed after the file, a node's address pointing at one loopback
 * TCP port, and a TCP server that accepts and never answers.
 * @module
 */
import { createServer, type AddressInfo } from 'node:net';
import { afterAll } from 'vitest';
import { encodeAddress, startP2pNode, type P2pNode, type P2pNodeOptions } from '../../src/node/index.js';

/**
 * Returns `node(opts?)`, which starts a P2P node listening on loopback without port mapping
 * (`opts` add to or override that); every node it started is closed in `afterAll`. Call at the
 * top level of a test file.
 */
export function useLoopbackNodes(): (opts?: P2pNodeOptions) => Promise<P2pNode> {
  const nodes: P2pNode[] = [];
  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.close()));
  });
  return async (opts = {}) => {
    const n = await startP2pNode({ listen: 'loopback', portMapping: false, ...opts });
    nodes.push(n);
    return n;
  };
}

/** `n`'s address (its identity, signal key and signalling) with one endpoint only: TCP 127.0.0.1:`port`. */
export function addressAt(n: P2pNode, port: number): string {
  return encodeAddress(n.identity, {
    signalKey: n.address.signalKey,
    interfaces: [{ nat: 'UNKNOWN', delta: { type: 'NA', value: 0 }, endpoints: [{ kind: 'loopback', proto: 'tcp', host: '127.0.0.1', port, family: 4 }] }],
    signal: [...n.address.signal],
  });
}

/** A TCP server on 127.0.0.1 that accepts and never answers: a dial to it hangs in the handshake. */
export async function silentTcpServer(): Promise<{ port: number; close(): void }> {
  // Its sockets may be reset by a peer that gives up (a failed handshake resets): listen for that.
  const server = createServer((s) => s.on('error', () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}
