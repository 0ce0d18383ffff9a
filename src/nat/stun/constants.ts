/**
 * STUN/TURN wire constants: header layout, methods, classes, attribute types, error codes and
 * the size limits the codec enforces. Sources: RFC 8489 (STUN, obsoletes 5389), RFC 3489
 * (classic STUN), RFC 5780 (NAT behaviour discovery), RFC 8656 (TURN), RFC 8445 (ICE),
 * RFC 6062 (TURN over TCP).
 * @module
 */

/** The fixed value of the magic-cookie header field (RFC 8489 §5). Absent in RFC 3489 messages. */
export const MAGIC_COOKIE = 0x2112a442;

/** Size of the STUN header: type (2) + length (2) + cookie (4) + transaction id (12). */
export const STUN_HEADER_SIZE = 20;

/** Size of an attribute's type+length header. */
export const ATTR_HEADER_SIZE = 4;

/** Length of an RFC 8489 transaction id (follows the magic cookie). */
export const TRANSACTION_ID_SIZE = 12;

/** Length of an RFC 3489 ("classic") transaction id, which occupies the cookie field too. */
export const CLASSIC_TRANSACTION_ID_SIZE = 16;

/**
 * Largest STUN message the codec encodes or decodes: the 20-byte header plus the largest
 * length field that is a multiple of 4 (0xFFFC) = 65552 bytes. This is the wire format's own
 * ceiling; no tighter limit is imposed because decoding is linear and also bounded by
 * {@link MAX_STUN_ATTRIBUTES}. Keeping UDP messages under the path MTU (RFC 8489 §6.1:
 * 576 bytes for IPv4 without PMTU knowledge, 1280 for IPv6) is the sender's business.
 */
export const MAX_STUN_MESSAGE_SIZE = STUN_HEADER_SIZE + 0xfffc;

/**
 * Most attributes accepted in one message (decode and encode). Real messages carry fewer than
 * 20; the cap bounds the work and memory a hostile datagram can cost.
 */
export const MAX_STUN_ATTRIBUTES = 64;

/**
 * Longest USERNAME value in bytes. RFC 5389 §15.3 says "less than 513 bytes", RFC 8489 §14.3
 * "fewer than 509"; the codec accepts (and allows sending) up to 513, the most liberal reading.
 */
export const MAX_USERNAME_BYTES = 513;

/** Longest REALM, NONCE, SOFTWARE and ERROR-CODE reason value in bytes (RFC 8489: fewer than 128 characters, up to 763 bytes). */
export const MAX_TEXT_BYTES = 763;

/** REALM, NONCE, SOFTWARE and error reasons must have fewer than this many characters (checked when encoding). */
export const MAX_TEXT_CHARS = 128;

/** XOR-ed into the CRC-32 to form the FINGERPRINT value ("STUN" in ASCII). */
export const FINGERPRINT_XOR = 0x5354554e;

/** Size of a MESSAGE-INTEGRITY (HMAC-SHA1) value. */
export const INTEGRITY_SHA1_SIZE = 20;

/** Full size of a MESSAGE-INTEGRITY-SHA256 value; it may be truncated to no less than 16 bytes, in steps of 4. */
export const INTEGRITY_SHA256_SIZE = 32;

/** Smallest accepted (truncated) MESSAGE-INTEGRITY-SHA256 value. */
export const INTEGRITY_SHA256_MIN_SIZE = 16;

/** STUN message classes (the C1/C0 bits of the message type). */
export const CLASS = {
  REQUEST: 0,
  INDICATION: 1,
  SUCCESS: 2,
  ERROR: 3,
} as const;

/** A STUN message class, 0–3; see {@link CLASS}. */
export type StunClass = (typeof CLASS)[keyof typeof CLASS];

/** STUN/TURN methods (12 bits). */
export const METHOD = {
  BINDING: 0x001,
  /** RFC 3489 Shared Secret (obsolete; decoded, never used by p2pd). */
  SHARED_SECRET: 0x002,
  ALLOCATE: 0x003,
  REFRESH: 0x004,
  SEND: 0x006,
  DATA: 0x007,
  CREATE_PERMISSION: 0x008,
  CHANNEL_BIND: 0x009,
  /** RFC 6062 TCP relay methods. */
  CONNECT: 0x00a,
  CONNECTION_BIND: 0x00b,
  CONNECTION_ATTEMPT: 0x00c,
} as const;

/** Largest method number (12 bits). */
export const MAX_METHOD = 0xfff;

/**
 * Attribute types. 0x0000–0x7FFF are comprehension-required, 0x8000–0xFFFF comprehension-optional.
 * Types without a typed codec (see `attributes.ts`) are still decoded, as raw bytes.
 */
export const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  /** RFC 3489 only. */
  RESPONSE_ADDRESS: 0x0002,
  /** RFC 3489 / RFC 5780. */
  CHANGE_REQUEST: 0x0003,
  /** RFC 3489 only. */
  SOURCE_ADDRESS: 0x0004,
  /** RFC 3489 only (RFC 5780 uses OTHER-ADDRESS). */
  CHANGED_ADDRESS: 0x0005,
  USERNAME: 0x0006,
  /** RFC 3489 only. */
  PASSWORD: 0x0007,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  UNKNOWN_ATTRIBUTES: 0x000a,
  /** RFC 3489 only. */
  REFLECTED_FROM: 0x000b,
  CHANNEL_NUMBER: 0x000c,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  DATA: 0x0013,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_ADDRESS_FAMILY: 0x0017,
  EVEN_PORT: 0x0018,
  REQUESTED_TRANSPORT: 0x0019,
  DONT_FRAGMENT: 0x001a,
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  PASSWORD_ALGORITHM: 0x001d,
  USERHASH: 0x001e,
  XOR_MAPPED_ADDRESS: 0x0020,
  RESERVATION_TOKEN: 0x0022,
  /** ICE (RFC 8445). */
  PRIORITY: 0x0024,
  /** ICE (RFC 8445). */
  USE_CANDIDATE: 0x0025,
  /** RFC 5780. */
  PADDING: 0x0026,
  /** RFC 5780. */
  RESPONSE_PORT: 0x0027,
  /** RFC 6062. */
  CONNECTION_ID: 0x002a,
  ADDITIONAL_ADDRESS_FAMILY: 0x8000,
  ADDRESS_ERROR_CODE: 0x8001,
  PASSWORD_ALGORITHMS: 0x8002,
  ALTERNATE_DOMAIN: 0x8003,
  ICMP: 0x8004,
  SOFTWARE: 0x8022,
  ALTERNATE_SERVER: 0x8023,
  /** RFC 5780. */
  CACHE_TIMEOUT: 0x8027,
  FINGERPRINT: 0x8028,
  /** ICE (RFC 8445). */
  ICE_CONTROLLED: 0x8029,
  /** ICE (RFC 8445). */
  ICE_CONTROLLING: 0x802a,
  /** RFC 5780. */
  RESPONSE_ORIGIN: 0x802b,
  /** RFC 5780. */
  OTHER_ADDRESS: 0x802c,
} as const;

/** True for attribute types 0x0000–0x7FFF, which a receiver must understand (RFC 8489 §14). */
export function isComprehensionRequired(type: number): boolean {
  return type >= 0 && type < 0x8000;
}

/** STUN/TURN error codes (ERROR-CODE attribute). */
export const ERROR_CODE = {
  TRY_ALTERNATE: 300,
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  MOBILITY_FORBIDDEN: 405,
  UNKNOWN_ATTRIBUTE: 420,
  ALLOCATION_MISMATCH: 437,
  STALE_NONCE: 438,
  ADDRESS_FAMILY_NOT_SUPPORTED: 440,
  WRONG_CREDENTIALS: 441,
  UNSUPPORTED_TRANSPORT: 442,
  PEER_ADDRESS_FAMILY_MISMATCH: 443,
  CONNECTION_ALREADY_EXISTS: 446,
  CONNECTION_TIMEOUT_OR_FAILURE: 447,
  ALLOCATION_QUOTA_REACHED: 486,
  ROLE_CONFLICT: 487,
  SERVER_ERROR: 500,
  INSUFFICIENT_CAPACITY: 508,
  /** RFC 3489 only. */
  GLOBAL_FAILURE: 600,
} as const;

/** Default reason phrases for {@link ERROR_CODE} values (RFC 8489 §14.8, RFC 8656 §18). */
export const ERROR_REASON: Readonly<Record<number, string>> = {
  300: 'Try Alternate',
  400: 'Bad Request',
  401: 'Unauthenticated',
  403: 'Forbidden',
  405: 'Mobility Forbidden',
  420: 'Unknown Attribute',
  437: 'Allocation Mismatch',
  438: 'Stale Nonce',
  440: 'Address Family not Supported',
  441: 'Wrong Credentials',
  442: 'Unsupported Transport Protocol',
  443: 'Peer Address Family Mismatch',
  446: 'Connection Already Exists',
  447: 'Connection Timeout or Failure',
  486: 'Allocation Quota Reached',
  487: 'Role Conflict',
  500: 'Server Error',
  508: 'Insufficient Capacity',
  600: 'Global Failure',
};

/** Address family byte values of address attributes and REQUESTED-ADDRESS-FAMILY. */
export const ADDRESS_FAMILY = { IPV4: 0x01, IPV6: 0x02 } as const;

/** IANA protocol numbers for REQUESTED-TRANSPORT. */
export const TRANSPORT = { UDP: 17, TCP: 6 } as const;

/** CHANGE-REQUEST flag bits (RFC 5780 §7.2). */
export const CHANGE_IP_FLAG = 0x04;
/** CHANGE-REQUEST "change port" flag. */
export const CHANGE_PORT_FLAG = 0x02;
