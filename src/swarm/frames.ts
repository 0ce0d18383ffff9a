/**
 * Link control frames: HELLO (first frame each way on a new link) and MEMBERS (gossip of
 * signed member announcements). DATA/BCAST frames are in `envelope.ts`.
 *
 * ```
 * HELLO    u8 1 · u8 role (0 initiator, 1 responder) · announcement · 64 signature over
 *          "p2pd/swarm/hello/v1\0" ‖ protocol hash ‖ transcript hash ‖ role ‖ announcement
 * MEMBERS  u8 2 · u8 flags (bit0: last frame of the initial snapshot) · u16 n · n announcements
 * PING     u8 5 (keep-alive: sent on a link idle for PING_INTERVAL; any frame proves liveness)
 * ```
 * The HELLO signature binds the announcing key to this very connection (both preambles'
 * random nonces are in the transcript), so a recorded HELLO cannot be replayed.
 * @module
 */
import { DecodeError } from '../errors.js';
import type { Identity } from '../crypto/identity.js';
import { Reader } from './codec.js';
import { MAX_MEMBERS_PER_FRAME } from './constants.js';
import { readAnnouncement, type RawAnnouncement } from './member.js';
import { signingInput, verifySignature } from './protocol.js';

/** Frame type of HELLO. */
export const FRAME_HELLO = 1;
/** Frame type of MEMBERS. */
export const FRAME_MEMBERS = 2;
/** Frame type of PING (keep-alive; one byte, no body, no answer). */
export const FRAME_PING = 5;
/** The PING frame. */
export const PING_FRAME: Buffer = Buffer.from([FRAME_PING]);
/** MEMBERS flag: the initial snapshot is complete. */
export const MEMBERS_END_OF_SNAPSHOT = 0x01;

const HELLO_DOMAIN = Buffer.from('p2pd/swarm/hello/v1\0', 'latin1');

function helloInput(protocolHash: Buffer, transcript: Buffer, role: number, announcement: Buffer): Buffer {
  return signingInput(HELLO_DOMAIN, protocolHash, Buffer.concat([transcript, Buffer.from([role]), announcement]));
}

/** Builds our HELLO. */
export function encodeHello(identity: Identity, protocolHash: Buffer, transcript: Buffer, initiator: boolean, announcement: Buffer): Buffer {
  const role = initiator ? 0 : 1;
  const sig = identity.sign(helloInput(protocolHash, transcript, role, announcement));
  return Buffer.concat([Buffer.from([FRAME_HELLO, role]), announcement, sig]);
}

/** A verified HELLO. */
export interface Hello {
  readonly announcement: RawAnnouncement;
}

/**
 * Decodes and verifies the peer's HELLO: structure, role (must be the opposite of ours), and
 * the signature over this connection's transcript. @throws {@link DecodeError}
 */
export function decodeHello(frame: Buffer, protocolHash: Buffer, transcript: Buffer, weAreInitiator: boolean): Hello {
  const r = new Reader(frame, 'swarm hello');
  if (r.u8('type') !== FRAME_HELLO) throw new DecodeError('swarm hello: expected a HELLO frame first');
  const role = r.u8('role');
  if (role !== (weAreInitiator ? 1 : 0)) throw new DecodeError('swarm hello: wrong role');
  const announcement = readAnnouncement(r);
  const sig = r.bytes(64, 'signature');
  r.end();
  if (announcement.leaving) throw new DecodeError('swarm hello: announcement says leaving');
  if (!verifySignature(announcement.publicKey, helloInput(protocolHash, transcript, role, announcement.raw), sig)) {
    throw new DecodeError('swarm hello: bad signature');
  }
  return { announcement };
}

/** Encodes MEMBERS frames (split at `MAX_MEMBERS_PER_FRAME`); the last one carries `flags`. */
export function encodeMembers(announcements: readonly Buffer[], flags = 0): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < announcements.length || (i === 0 && out.length === 0); i += MAX_MEMBERS_PER_FRAME) {
    const chunk = announcements.slice(i, i + MAX_MEMBERS_PER_FRAME);
    const last = i + MAX_MEMBERS_PER_FRAME >= announcements.length;
    const head = Buffer.alloc(4);
    head[0] = FRAME_MEMBERS;
    head[1] = last ? flags : 0;
    head.writeUInt16BE(chunk.length, 2);
    out.push(Buffer.concat([head, ...chunk]));
    if (announcements.length === 0) break;
  }
  return out;
}

/** Decodes a MEMBERS frame (structure only; each announcement is verified when applied). */
export function decodeMembers(frame: Buffer): { flags: number; announcements: RawAnnouncement[] } {
  const r = new Reader(frame, 'swarm members');
  if (r.u8('type') !== FRAME_MEMBERS) throw new DecodeError('swarm members: bad type');
  const flags = r.u8('flags');
  if ((flags & ~MEMBERS_END_OF_SNAPSHOT) !== 0) throw new DecodeError('swarm members: unknown flags');
  const n = r.u16('count');
  if (n > MAX_MEMBERS_PER_FRAME) throw new DecodeError('swarm members: too many announcements');
  const announcements: RawAnnouncement[] = [];
  for (let i = 0; i < n; i++) announcements.push(readAnnouncement(r));
  r.end();
  return { flags, announcements };
}
