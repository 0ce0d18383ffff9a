/**
 * Long-term credentials of a TURN client (RFC 8489 §9.2, RFC 8656 §7): the state learned from
 * the server's challenge (REALM, NONCE), the derived key, and the decision what to do with a
 * 401 or 438 error response.
 * @module
 */
import { InvalidArgumentError, StunError } from '../../errors.js';
import { ATTR, MAX_USERNAME_BYTES } from '../stun/constants.js';
import type { StunAttribute } from '../stun/attributes.js';
import { longTermKey } from '../stun/integrity.js';
import { getAttr, type StunMessage } from '../stun/message.js';

/** What the caller should do after an authentication error response. */
export type ChallengeOutcome = 'retry' | 'fail';

/**
 * Credential state of one TURN session. Before the first challenge it signs nothing
 * (the first Allocate goes out without credentials, as RFC 8656 §7.1 describes); afterwards
 * every request carries USERNAME, REALM, NONCE and MESSAGE-INTEGRITY.
 */
export class TurnAuth {
  /** Username as sent in USERNAME. */
  readonly username: string;
  readonly #password: string;
  /** REALM of the last challenge, once challenged. */
  realm: string | undefined;
  /** NONCE to send, once challenged; replaced on 438 Stale Nonce. */
  nonce: string | undefined;
  /** 401 challenges answered. */
  challenges = 0;
  /** 438 Stale Nonce answers handled (nonce replaced). */
  staleNonces = 0;
  #key: Buffer | undefined;
  #keyRealm: string | undefined;

  /** Validates the credentials; throws {@link InvalidArgumentError}. */
  constructor(username: string, password: string) {
    if (typeof username !== 'string' || username.length === 0) throw new InvalidArgumentError('TURN username must be a non-empty string');
    if (Buffer.byteLength(username, 'utf8') > MAX_USERNAME_BYTES) throw new InvalidArgumentError(`TURN username longer than ${MAX_USERNAME_BYTES} bytes`);
    if (typeof password !== 'string') throw new InvalidArgumentError('TURN password must be a string');
    this.username = username;
    this.#password = password;
  }

  /** True once REALM and NONCE are known, i.e. requests can be signed. */
  get ready(): boolean {
    return this.realm !== undefined && this.nonce !== undefined;
  }

  /** The long-term key `MD5(username:realm:password)` for the current realm. */
  get key(): Buffer | undefined {
    if (this.realm === undefined) return undefined;
    if (this.#key === undefined || this.#keyRealm !== this.realm) {
      this.#key = longTermKey(this.username, this.realm, this.#password);
      this.#keyRealm = this.realm;
    }
    return this.#key;
  }

  /** The credential attributes to append to a request (empty before the first challenge). */
  attributes(): StunAttribute[] {
    if (!this.ready) return [];
    return [
      { type: ATTR.USERNAME, value: this.username },
      { type: ATTR.REALM, value: this.realm as string },
      { type: ATTR.NONCE, value: this.nonce as string },
    ];
  }

  /**
   * Handles a 401 or 438 error response to a request that was signed (`signed`) or not.
   * - 401 to an unsigned request: adopt REALM and NONCE, retry signed.
   * - 401 to a signed request: the credentials are wrong, fail.
   * - 438 Stale Nonce: adopt the new NONCE (and REALM, if it changed), retry.
   * Throws {@link StunError} when the challenge lacks REALM or NONCE.
   */
  challenge(resp: StunMessage, code: number, signed: boolean): ChallengeOutcome {
    const realm = getAttr(resp, ATTR.REALM);
    const nonce = getAttr(resp, ATTR.NONCE);
    if (code === 401 && signed) return 'fail';
    if (nonce === undefined || (realm === undefined && this.realm === undefined)) {
      throw new StunError(`TURN server answered ${code} without ${nonce === undefined ? 'NONCE' : 'REALM'}: cannot authenticate`, { errorCode: code });
    }
    if (code === 438 && signed && nonce === this.nonce) {
      throw new StunError('TURN server answered 438 Stale Nonce but sent the same NONCE again', { errorCode: code });
    }
    if (realm !== undefined) this.realm = realm;
    this.nonce = nonce;
    if (code === 438) this.staleNonces++;
    else this.challenges++;
    return 'retry';
  }
}
