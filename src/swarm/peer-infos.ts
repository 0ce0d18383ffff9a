/**
 * The {@link SwarmPeerInfo} objects a `SwarmPeer` hands out (events, `peers`, `members`,
 * message sources): frozen, cached per node id so the same node yields the same object while
 * its endpoint is unchanged, and bounded ({@link MAX_PEER_INFOS}).
 * @module
 */
import type { Member, MemberTable } from './member.js';
import type { SwarmPeerInfo } from './types.js';

/**
 * Most cached {@link SwarmPeerInfo} objects (non-members and members alike) per peer: once the
 * cache holds more, it is cleared before the next one is added.
 */
export const MAX_PEER_INFOS = 4096;

/** The bounded cache of a peer's {@link SwarmPeerInfo} objects. */
export class PeerInfoCache {
  readonly #infos = new Map<string, SwarmPeerInfo>();
  readonly #members: () => MemberTable | undefined;

  /** @param members The running core's member table (`undefined` before `bind()`). */
  constructor(members: () => MemberTable | undefined) {
    this.#members = members;
  }

  /** The info of node `idHex` (its member info if it is a known member; else one without endpoint). */
  info(idHex: string, publicKey: Buffer): SwarmPeerInfo {
    const m = this.#members()?.get(idHex);
    if (m) return this.member(m);
    let i = this.#infos.get(idHex);
    if (!i) {
      i = Object.freeze({ id: Buffer.from(idHex, 'hex'), idHex, publicKey, endpoint: undefined });
      if (this.#infos.size > MAX_PEER_INFOS) this.#infos.clear();
      this.#infos.set(idHex, i);
    }
    return i;
  }

  /** The info of member `m` (a new object only when its endpoint changed). */
  member(m: Member): SwarmPeerInfo {
    const i = this.#infos.get(m.idHex);
    if (i && i.endpoint && i.endpoint.host === m.endpoint.host && i.endpoint.port === m.endpoint.port) return i;
    const n = Object.freeze({ id: m.id, idHex: m.idHex, publicKey: m.publicKey, endpoint: m.endpoint });
    if (this.#infos.size > MAX_PEER_INFOS) this.#infos.clear();
    this.#infos.set(m.idHex, n);
    return n;
  }
}
