/**
 * The node's listeners: one TCP server per address family on one port (every interface, or
 * loopback only), and UDP sockets on the same port where it is free.
 * @module
 */
import { StateError } from '../errors.js';
import type { Family } from '../interfaces/endpoint.js';
import { pipeOpen } from '../pipes/open.js';
import type { TcpServer } from '../pipes/tcp-server.js';
import type { UdpPipe } from '../pipes/udp.js';

/** Attempts at finding a port free on both families when the port is chosen by the OS. */
export const LISTEN_ATTEMPTS = 6;

/** What {@link listenEverywhere} opened. */
export interface NodeListeners {
  /** The common port. */
  port: number;
  /** Families with a TCP server. */
  families: Set<Family>;
  /** TCP servers (raw framing), one per family. */
  tcp: TcpServer[];
  /** UDP sockets on the same port (those that could bind). */
  udp: UdpPipe[];
}

const codeOf = (e: unknown): string | undefined => (e as { code?: string }).code;

/**
 * Listens on `port` (0: one the OS picks, the same for both families) on every interface, or
 * on loopback only. A family the machine lacks is skipped; a taken port is not.
 * @throws BindError (`ERR_ADDRESS_IN_USE`) when the port is taken; StateError when nothing could listen.
 */
export async function listenEverywhere(o: { loopback: boolean; port: number }): Promise<NodeListeners> {
  const hosts: [string, Family][] = o.loopback ? [['127.0.0.1', 4], ['::1', 6]] : [['0.0.0.0', 4], ['::', 6]];
  const out: NodeListeners = { port: o.port, families: new Set(), tcp: [], udp: [] };
  for (let attempt = 0; ; attempt++) {
    const opened: [TcpServer, Family][] = [];
    let port = o.port;
    try {
      for (const [host, family] of hosts) {
        try {
          const s = await pipeOpen('tcp', undefined, { bind: { host, port }, framing: 'raw', ...(family === 6 ? { ipv6Only: true } : {}) });
          opened.push([s, family]);
          port = s.local.port;
        } catch (e) {
          if (codeOf(e) === 'ERR_ADDRESS_IN_USE') throw e;
        }
      }
      if (opened.length === 0) throw new StateError('could not listen on any address');
      out.port = port;
      for (const [s, family] of opened) {
        out.tcp.push(s);
        out.families.add(family);
      }
      break;
    } catch (e) {
      await Promise.all(opened.map(([s]) => s.close()));
      // Port 0 gave IPv4 a port already taken on IPv6: try another.
      if (o.port !== 0 || attempt >= LISTEN_ATTEMPTS - 1 || codeOf(e) !== 'ERR_ADDRESS_IN_USE') throw e;
    }
  }
  // UDP on the same port where it is free (hole punching, datagrams); not fatal.
  for (const [host, family] of hosts) {
    if (!out.families.has(family)) continue;
    try {
      out.udp.push((await pipeOpen('udp', undefined, { bind: { host, port: out.port }, ...(family === 6 ? { ipv6Only: true } : {}), onMessage: () => undefined })) as UdpPipe);
    } catch {
      /* port taken for UDP: TCP is what matters */
    }
  }
  return out;
}
