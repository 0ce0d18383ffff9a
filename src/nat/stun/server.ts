/**
 * A small STUN server (RFC 8489 Binding; RFC 5780 NAT behaviour discovery when given two
 * addresses; answers RFC 3489 classic requests in kind) on p2pd pipes, over UDP and TCP.
 *
 * With two addresses it opens every primary/alternate IP × primary/alternate port
 * combination (4 sockets per protocol), answers CHANGE-REQUEST from the socket it names and
 * reports OTHER-ADDRESS / CHANGED-ADDRESS. Responses carry XOR-MAPPED-ADDRESS (MAPPED-ADDRESS
 * and SOURCE-ADDRESS for RFC 3489 classic requests), RESPONSE-ORIGIN, SOFTWARE and FINGERPRINT. Requests with
 * unknown comprehension-required attributes get 420 with UNKNOWN-ATTRIBUTES; other methods
 * and impossible requests get 400. Garbage, responses, indications, datagrams over the size
 * limit and requests beyond the per-source rate limit are dropped silently.
 *
 * @example
 * await using server = await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0] });
 * console.log(server.primary, server.other); // RFC 5780 capable
 * @module
 */
import { BindError, InvalidArgumentError } from '../../errors.js';
import { formatEndpoint, parseHost } from '../../interfaces/endpoint.js';
import { isUnspecified } from '../../interfaces/scope.js';
import { pipeOpen } from '../../pipes/open.js';
import { throwIfAborted } from '../../util/abort.js';
import { STUN_HEADER_SIZE } from './constants.js';
import { STUN_PORT } from './client-options.js';
import { StunServer, type Sock } from './server-core.js';
import { STUN_ALT_PORT, type StunServerOptions } from './server-options.js';

export {
  DEFAULT_MAX_REQUEST_SIZE, DEFAULT_MAX_STUN_CONNECTIONS, DEFAULT_STUN_RATE_LIMIT, DEFAULT_STUN_TCP_IDLE, MAX_RATE_ENTRIES, MAX_STUN_TCP_UNSENT, STUN_ALT_PORT,
  type StunServerOptions, type StunServerStats,
} from './server-options.js';
export { StunServer } from './server-core.js';

function isBindInUse(e: unknown): boolean {
  return (e as { code?: string } | null)?.code === 'ERR_ADDRESS_IN_USE';
}

/**
 * Starts a STUN server. With one address it opens one socket per protocol (on the first
 * port); with two addresses and two ports it opens the four RFC 5780 sockets per protocol.
 * Ports `0` are picked free (the same port number on both addresses; retried on collisions).
 * Rejects with `BindError`, `InvalidArgumentError`, `AbortError`.
 */
export async function startStunServer(opts: StunServerOptions = {}): Promise<StunServer> {
  throwIfAborted(opts.signal);
  const addrs = (opts.addresses ?? ['0.0.0.0']).map((a) => parseHost(a).host);
  if (addrs.length < 1 || addrs.length > 2) throw new InvalidArgumentError('addresses must hold one or two IP addresses');
  const fam = parseHost(addrs[0] as string).family;
  if (addrs.length === 2) {
    if (parseHost(addrs[1] as string).family !== fam) throw new InvalidArgumentError('both addresses must be of the same family');
    if (addrs[0] === addrs[1]) throw new InvalidArgumentError('the alternate address must differ from the primary');
    if (addrs.some((a) => isUnspecified(a))) throw new InvalidArgumentError('an RFC 5780 server needs two specific addresses, not a wildcard');
  }
  const rfc5780 = addrs.length === 2;
  const wanted = opts.ports ?? [STUN_PORT, STUN_ALT_PORT];
  if (!Array.isArray(wanted) || wanted.length < 1 || wanted.length > 2) throw new InvalidArgumentError('ports must hold one or two port numbers');
  for (const p of wanted) if (!Number.isInteger(p) || p < 0 || p > 65535) throw new InvalidArgumentError(`bad port ${String(p)}`);
  if (rfc5780 && wanted.length !== 2) throw new InvalidArgumentError('an RFC 5780 server needs two ports');
  if (rfc5780 && wanted[0] !== 0 && wanted[0] === wanted[1]) throw new InvalidArgumentError('the alternate port must differ from the primary');
  const protos = opts.protos ?? ['udp'];
  if (!Array.isArray(protos) || protos.length === 0 || protos.some((p) => p !== 'udp' && p !== 'tcp')) {
    throw new InvalidArgumentError("protos must be a non-empty list of 'udp' / 'tcp'");
  }
  const rl = opts.rateLimit;
  if (rl !== undefined && rl !== false && !(rl.rate > 0 && rl.burst >= 1)) throw new InvalidArgumentError('rateLimit needs rate > 0 and burst >= 1');
  if (opts.maxRequestSize !== undefined && !(Number.isInteger(opts.maxRequestSize) && opts.maxRequestSize >= STUN_HEADER_SIZE)) {
    throw new InvalidArgumentError(`maxRequestSize must be an integer >= ${STUN_HEADER_SIZE}`);
  }
  const uniqProtos = [...new Set(protos)];
  const portCount = rfc5780 ? 2 : 1;
  const anyZero = wanted.slice(0, portCount).some((p) => p === 0);
  for (let attempt = 0; ; attempt++) {
    const socks: Sock[] = [];
    try {
      const ports: number[] = [];
      for (let pi = 0; pi < portCount; pi++) {
        let port = wanted[pi] as number;
        for (const proto of uniqProtos) {
          for (let ii = 0; ii < addrs.length; ii++) {
            const host = addrs[ii] as string;
            const bind = { host, port };
            const pipe = proto === 'udp'
              ? await pipeOpen('udp', undefined, { bind, signal: opts.signal, onMessage: noop })
              : await pipeOpen('tcp', undefined, { bind, signal: opts.signal, framing: 'raw', onMessage: noop });
            // The first socket of a port-0 slot fixes the number the others must get.
            if (port === 0) port = pipe.local.port;
            if (pi === 1 && port === ports[0]) {
              await pipe.close();
              throw new BindError('ERR_ADDRESS_IN_USE', formatEndpoint(bind), 'the alternate port came out equal to the primary one');
            }
            socks.push({ proto, ip: ii, port: pi, local: { host, port: pipe.local.port, family: fam }, pipe });
          }
        }
        ports.push(port);
      }
      return new StunServer(socks, addrs, ports, opts);
    } catch (e) {
      await Promise.all(socks.map((s) => s.pipe.close()));
      if (!anyZero || !isBindInUse(e) || attempt >= 20) throw e;
    }
  }
}

function noop(): void {}

/** Describes a server's endpoints, e.g. for logs: `udp 127.0.0.1:3478, udp 127.0.0.2:3478, …`. */
export function describeStunServer(s: StunServer): string {
  return s.endpoints.map((e) => `${e.proto} ${formatEndpoint(e.local)}`).join(', ');
}
