/**
 * The shapes of a peer address (see `address.ts` for its encoding): endpoints, interfaces,
 * signalling channels, and the parsed, verified address.
 * @module
 */
import type { Family } from '../interfaces/endpoint.js';
import type { DeltaType } from '../nat/detect/delta.js';
import type { NatType } from '../nat/detect/nat-type.js';
import type { Proto } from '../pipes/types.js';

/** What an advertised endpoint is. */
export type AddrEndpointKind = 'lan' | 'link-local' | 'global' | 'external' | 'mapped' | 'loopback';

/** One advertised endpoint. */
export interface AddrEndpoint {
  /**
   * `lan` (private/ULA/CGNAT NIC address), `link-local`, `global` (public NIC address),
   * `external` (reflexive, from STUN), `mapped` (gateway port mapping), `loopback` (same host
   * only: it tells the port to use there).
   */
  kind: AddrEndpointKind;
  /** Transport listening there. */
  proto: Proto;
  /** IP literal (no zone: a link-local address is used with the connecting side's interface). */
  host: string;
  /** Port, 1–65535. */
  port: number;
  /** Family of `host`. */
  family: Family;
}

/** NAT type as carried by an address: P2PD's seven types, or unknown (not detected). */
export type AddrNatType = NatType | 'UNKNOWN';
/** Port allocation delta as carried by an address. */
export interface AddrDelta {
  /** P2PD's delta class; `'NA'` when not tested or not applicable. */
  type: DeltaType | 'NA';
  /** The step (INDEPENDENT/DEPENDENT) or offset (PRESERVING), −32768…32767. */
  value: number;
}

/** One network interface of the node. */
export interface AddrInterface {
  /** NAT in front of it. */
  nat: AddrNatType;
  /** Its NAT's port allocation. */
  delta: AddrDelta;
  /** Where the node listens on it (and its external / mapped endpoints). */
  endpoints: AddrEndpoint[];
}

/** How to reach the node's signalling inbox. */
export type SignalChannel =
  /** A broker given by URL, e.g. `mqtt://198.51.100.7:1883`. */
  | { type: 'mqtt'; url: string }
  /** A broker the node hosts itself, at `port` on any of its addresses. */
  | { type: 'mqtt-self'; port: number };

/** What an address is made of (before signing). */
export interface PeerAddressInit {
  /** X25519 public key signalling messages are encrypted to (32 bytes). */
  signalKey: Uint8Array;
  /** Interfaces with their endpoints. */
  interfaces: AddrInterface[];
  /** Signalling channels. */
  signal: SignalChannel[];
  /** Unix seconds. @default now */
  timestamp?: number;
}

/** A parsed, verified peer address. */
export interface PeerAddress {
  /** The address text (`p2pd…`). */
  readonly text: string;
  /** Ed25519 identity public key (32 bytes). */
  readonly publicKey: Buffer;
  /** Node id: SHA-256 of {@link publicKey}. */
  readonly id: Buffer;
  /** {@link id} as hex. */
  readonly idHex: string;
  /** X25519 signalling key (32 bytes). */
  readonly signalKey: Buffer;
  /** Unix seconds when the node made the address. */
  readonly timestamp: number;
  /** Interfaces. */
  readonly interfaces: readonly AddrInterface[];
  /** Signalling channels. */
  readonly signal: readonly SignalChannel[];
}
