/**
 * 300 Try Alternate (RFC 8489 §10; RFC 8656 §7, Allocate error responses): which
 * ALTERNATE-SERVER a TURN client may follow, checked before anything is sent there.
 *
 * Trust: a 300 is not authenticated. The first Allocate carries no credentials, so its answer
 * cannot be signed, and RFC 8489 §10 allows unsigned 300s; p2pd checks no MESSAGE-INTEGRITY
 * on any 300. Whoever answers for the configured server (the server itself, or anyone on
 * the path who sees the request) can therefore send the client elsewhere. What p2pd does:
 *
 * - It follows at most `maxRedirects` hops (`TURN_MAX_REDIRECTS`, 3, by default; `0`
 *   follows none), never a server already tried (a loop), over the same transport (UDP or
 *   TCP) as before, as RFC 8489 §10 requires.
 * - It refuses, with a {@link StunError} (`errorCode` 300) and before opening a socket to it,
 *   a target that is no unicast host: an unspecified or "this network" address (`0.0.0.0/8`,
 *   `::`), the limited broadcast `255.255.255.255`, multicast (`224.0.0.0/4`, `ff00::/8`),
 *   port 0; a target of another address family than the redirecting server (RFC 8489 §10
 *   has the server name one of the family the request came from), an IPv4-mapped IPv6
 *   address included; a link-local IPv6 target whose interface it cannot know; and
 *   a loopback target named by a server that is not itself on this host (it would aim the
 *   client at local services).
 * - At the alternate it starts over: a fresh, unsigned Allocate, and only after that server's
 *   own 401 challenge the same credentials (RFC 8489 §10: "the same credentials"): USERNAME
 *   in clear, and MESSAGE-INTEGRITY keyed with MD5(username:realm:password) for the realm the
 *   alternate chose. The password itself is never sent, nor is the first server's REALM or
 *   NONCE; but an alternate run by an attacker learns the username and a value it can attack
 *   offline (guessing the password), and relays whatever the application sends through it.
 *
 * Callers that do not trust redirects set `maxRedirects: 0`: a 300 is then a `StunError`.
 * @module
 */
import { StunError } from '../../errors.js';
import { formatEndpoint, sameEndpoint, type Endpoint } from '../../interfaces/endpoint.js';
import { IPV4_BYTES, ipToBytes, isMappedIPv4 } from '../../interfaces/ip.js';
import { ipScope } from '../../interfaces/scope.js';

/** First octet of the IPv4 multicast range `224.0.0.0/4`. */
const V4_MULTICAST_FIRST = 224;
/** Last first octet of the IPv4 multicast range `224.0.0.0/4`. */
const V4_MULTICAST_LAST = 239;
/** First byte of the IPv6 multicast range `ff00::/8`. */
const V6_MULTICAST = 0xff;

/**
 * Why `alt`, an ALTERNATE-SERVER named by the server at `from`, must not be tried, or
 * `undefined` when it may be (see the module comment for the rules).
 */
export function alternateProblem(alt: Endpoint, from: Endpoint): string | undefined {
  if (!Number.isInteger(alt.port) || alt.port < 1 || alt.port > 65535) return `port ${alt.port}`;
  let b: Uint8Array;
  try {
    b = ipToBytes(alt.host);
  } catch {
    return 'not an IP address';
  }
  const v4 = b.length === IPV4_BYTES ? b : isMappedIPv4(b) ? b.subarray(12) : undefined;
  if (v4) {
    const first = v4[0] as number;
    if (first === 0) return 'an unspecified ("this network") address';
    if (v4.every((x) => x === 255)) return 'the limited broadcast address';
    if (first >= V4_MULTICAST_FIRST && first <= V4_MULTICAST_LAST) return 'a multicast address';
  } else {
    if (b.every((x) => x === 0)) return 'the unspecified address';
    if (b[0] === V6_MULTICAST) return 'a multicast address';
  }
  if (isMappedIPv4(b)) return 'an IPv4-mapped IPv6 address (an IPv4 target in IPv6 form)';
  const family = b.length === IPV4_BYTES ? 4 : 6;
  if (family !== from.family) return `an IPv${family} address, and the client's transport to ${formatEndpoint(from)} is IPv${from.family}`;
  const scope = ipScope(alt.host);
  if (scope === 'link-local' && family === 6 && !alt.scopeId) return 'a link-local address without a known interface';
  if (scope === 'loopback' && ipScope(from.host) !== 'loopback') return `a loopback address, named by ${formatEndpoint(from)} which is not on this host`;
  return undefined;
}

/**
 * The server to try next after a 300 (Try Alternate) from `from`: `alt` (a link-local IPv6
 * target inherits `from`'s interface), or a {@link StunError} with `errorCode` 300 thrown
 * when there is none, it is unusable ({@link alternateProblem}), already in `tried` (a loop),
 * or `hop` redirects were already followed and `maxRedirects` allows no more. Nothing has
 * been sent to `alt` when it throws.
 */
export function followRedirect(alt: Endpoint | undefined, from: Endpoint, tried: readonly Endpoint[], hop: number, maxRedirects: number): Endpoint {
  const fromText = formatEndpoint(from);
  if (alt === undefined) throw new StunError(`TURN server ${fromText} redirected (300) without ALTERNATE-SERVER`, { errorCode: 300 });
  const target: Endpoint =
    alt.family === 6 && !alt.scopeId && from.scopeId && ipScope(alt.host) === 'link-local' && ipScope(from.host) === 'link-local'
      ? { ...alt, scopeId: from.scopeId }
      : alt;
  const chain = [...tried, target].map((e) => formatEndpoint(e)).join(' -> ');
  const problem = alternateProblem(target, from);
  if (problem !== undefined) {
    throw new StunError(`TURN server ${fromText} redirected (300) to ${formatEndpoint(target)}, ${problem}: not followed`, { errorCode: 300, reason: 'Try Alternate' });
  }
  if (tried.some((t) => sameEndpoint(t, target))) throw new StunError(`TURN redirect loop: ${chain}`, { errorCode: 300, reason: 'Try Alternate' });
  if (hop >= maxRedirects) throw new StunError(`TURN: more than ${maxRedirects} redirects: ${chain}`, { errorCode: 300, reason: 'Try Alternate' });
  return target;
}
