/**
 * Peer addresses: one copy-pasteable word that says who a node is and how to reach it.
 *
 * ```
 * p2pd2Vq8…        "p2pd" + base58(binary form)
 * ```
 *
 * Binary form (version 1), all integers big-endian:
 *
 * | bytes | field |
 * |---|---|
 * | 1 | version (`1`) |
 * | 4 | timestamp: when the node made this address, Unix seconds (newer replaces older) |
 * | 32 | Ed25519 identity public key (the node id is its SHA-256) |
 * | 32 | X25519 signalling key: signalling messages to the node are encrypted to it |
 * | … | records: `type u8`, `length u16`, `value` |
 * | 64 | Ed25519 signature by the identity key over `"p2pd-addr-v1\0"` + everything before it |
 *
 * Records:
 * - `1` interface: `nat u8` (P2PD's NAT type code 1–7, 0 unknown), `delta u8` (P2PD's delta
 *   code 1–6), `delta value i16`, then endpoints of 7 (IPv4) or 19 (IPv6) bytes:
 *   `flags u8` (bits 0–2 kind: 0 lan, 1 link-local, 2 global, 3 external (reflexive),
 *   4 mapped (UPnP/NAT-PMP/PCP), 5 loopback; bit 3 IPv6; bit 4 UDP, else TCP; bits 5–7 zero),
 *   address, `port u16`.
 * - `2` MQTT broker URL (UTF-8, `mqtt:`/`mqtts:`/`ws:`/`wss:`, no credentials).
 * - `3` MQTT broker hosted by the node itself: `port u16` (reach it at any of the node's addresses).
 * - Types `0x80`–`0xff` are optional: unknown ones are skipped. Unknown types below `0x80` are rejected.
 *
 * Brokers are named by URL, never by an index into a built-in list, so any two nodes that
 * share a broker can signal each other. The signature makes an address tamper-evident: a
 * changed endpoint, key or broker is rejected, and the signalling key provably belongs to the id.
 * @module
 */
import { isIP } from 'node:net';
import { Identity, idFromPublicKey } from '../crypto/identity.js';
import { DELTA_TYPE_CODE, type DeltaType } from '../nat/detect/delta.js';
import { NAT_TYPE_CODE, type NatType } from '../nat/detect/nat-type.js';
import { bytesToIp, ipScope, ipToBytes, isUnspecified } from '../interfaces/scope.js';
import { AddressError } from './errors.js';
import { base58Decode, base58Encode } from './base58.js';
import type { AddrDelta, AddrEndpoint, AddrEndpointKind, AddrInterface, AddrNatType, PeerAddress, PeerAddressInit, SignalChannel } from './address-types.js';

/** Text prefix of every address. */
export const ADDR_PREFIX = 'p2pd';
/** Version byte of the binary form. */
export const ADDR_VERSION = 1;
/** Longest address accepted, in characters (checked before any decoding). */
export const MAX_ADDR_TEXT = 2048;
/** Longest binary form accepted, bytes. */
export const MAX_ADDR_BYTES = 1400;
/** Most interface records. */
export const MAX_ADDR_INTERFACES = 8;
/** Most endpoints per interface. */
export const MAX_ADDR_ENDPOINTS = 16;
/** Most signalling records. */
export const MAX_ADDR_SIGNAL = 8;
/** Longest broker URL, bytes. */
export const MAX_BROKER_URL = 255;
/** Fixed header size: version, timestamp, two keys. */
const HEADER = 1 + 4 + 32 + 32;
const SIG_LEN = 64;
const SIG_DOMAIN = Buffer.from('p2pd-addr-v1\0', 'latin1');

const REC_INTERFACE = 1;
const REC_MQTT_URL = 2;
const REC_MQTT_SELF = 3;

export type {
  AddrDelta, AddrEndpoint, AddrEndpointKind, AddrInterface, AddrNatType, PeerAddress, PeerAddressInit, SignalChannel,
} from './address-types.js';

const KINDS: readonly AddrEndpointKind[] = ['lan', 'link-local', 'global', 'external', 'mapped', 'loopback'];

const NAT_BY_CODE = new Map<number, NatType>(Object.entries(NAT_TYPE_CODE).map(([k, v]) => [v, k as NatType]));
const DELTA_BY_CODE = new Map<number, DeltaType | 'NA'>(Object.entries(DELTA_TYPE_CODE).map(([k, v]) => [v, k as DeltaType | 'NA']));

function fail(field: string, message: string): never {
  throw new AddressError(field, message);
}

/** Whether an IP literal is multicast (224.0.0.0/4, ff00::/8). */
function isMulticast(b: Uint8Array): boolean {
  return b.length === 4 ? ((b[0] as number) & 0xf0) === 0xe0 : b[0] === 0xff;
}

/** Checks that `host` fits `kind`; returns an error message or undefined. */
function kindProblem(kind: AddrEndpointKind, host: string, bytes: Uint8Array): string | undefined {
  if (isUnspecified(host)) return `unspecified address ${host}`;
  if (isMulticast(bytes)) return `multicast address ${host}`;
  if (bytes.length === 4 && bytes.every((x) => x === 0xff)) return `broadcast address ${host}`;
  if (bytes.length === 16 && bytes.subarray(0, 10).every((x) => x === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `IPv4-mapped address ${host} (use the IPv4 form)`;
  }
  const scope = ipScope(host);
  if (kind === 'loopback') return scope === 'loopback' ? undefined : `${host} (${scope}) is not a loopback address`;
  if (scope === 'loopback') return `loopback address ${host}`;
  switch (kind) {
    case 'lan':
      return scope === 'private' || scope === 'ula' || scope === 'cgnat' ? undefined : `${host} (${scope}) is not a LAN address`;
    case 'link-local':
      return scope === 'link-local' ? undefined : `${host} (${scope}) is not link-local`;
    case 'global':
      return scope === 'global' ? undefined : `${host} (${scope}) is not a global address`;
    case 'external':
    case 'mapped':
      return scope === 'link-local' ? `${host} is link-local` : undefined;
  }
}

/**
 * Why `e` cannot go into an address (the check {@link encodeAddress} makes), or undefined when
 * it can: e.g. an `external` endpoint that a STUN server on loopback reported as `127.0.0.1`.
 */
export function endpointProblem(e: AddrEndpoint): string | undefined {
  const v = typeof e.host === 'string' ? isIP(e.host) : 0;
  if (v === 0) return `${String(e.host)} is not an IP literal`;
  if (v !== e.family) return `family ${String(e.family)} does not match host ${e.host}`;
  if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535) return `port ${String(e.port)} out of range 1-65535`;
  return kindProblem(e.kind, e.host, ipToBytes(e.host));
}

function checkEndpoint(e: AddrEndpoint, where: string): Uint8Array {
  if (e === null || typeof e !== 'object') fail('endpoint', `${where} is not an object`);
  if (!KINDS.includes(e.kind)) fail('endpoint', `${where}: unknown kind ${JSON.stringify(e.kind)}`);
  if (e.proto !== 'tcp' && e.proto !== 'udp') fail('endpoint', `${where}: proto must be 'tcp' or 'udp'`);
  const v = typeof e.host === 'string' ? isIP(e.host) : 0;
  if (v === 0) fail('endpoint', `${where}: host is not an IP literal`);
  if (e.family !== 4 && e.family !== 6) fail('endpoint', `${where}: family must be 4 or 6`);
  if (v !== e.family) fail('endpoint', `${where}: family ${e.family} does not match host ${e.host}`);
  if (!Number.isInteger(e.port) || e.port < 1 || e.port > 65535) fail('endpoint', `${where}: port ${String(e.port)} out of range 1-65535`);
  const b = ipToBytes(e.host);
  const problem = kindProblem(e.kind, e.host, b);
  if (problem) fail('endpoint', `${where}: ${problem}`);
  return b;
}

/** Validates a broker URL; returns its canonical text. */
export function checkBrokerUrl(url: unknown): string {
  if (typeof url !== 'string' || url.length === 0 || Buffer.byteLength(url) > MAX_BROKER_URL) {
    fail('signal', `broker URL must be a string of 1-${MAX_BROKER_URL} bytes`);
  }
  if (!/^[\x21-\x7e]+$/.test(url)) fail('signal', 'broker URL must be printable ASCII without spaces');
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    fail('signal', `not a URL: ${JSON.stringify(url.slice(0, 80))}`);
  }
  if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(u.protocol)) fail('signal', `unsupported broker scheme ${JSON.stringify(u.protocol)}`);
  if (u.username || u.password) fail('signal', 'broker URL must not carry credentials');
  if (!u.hostname) fail('signal', 'broker URL has no host');
  if (u.port !== '' && (Number(u.port) < 1 || Number(u.port) > 65535)) fail('signal', 'broker URL port out of range');
  return url;
}

function writeRecord(parts: Buffer[], type: number, value: Buffer): void {
  if (value.length > 0xffff) fail('record', 'record too large');
  const h = Buffer.alloc(3);
  h[0] = type;
  h.writeUInt16BE(value.length, 1);
  parts.push(h, value);
}

/**
 * Builds and signs an address for `identity`. Validates every field (the same checks
 * {@link parseAddress} makes), so an address this returns always parses.
 * @throws AddressError on a bad field.
 */
export function encodeAddress(identity: Identity, init: PeerAddressInit): string {
  if (!(identity instanceof Identity)) fail('identity', 'identity must be an Identity');
  if (!(init.signalKey instanceof Uint8Array) || init.signalKey.length !== 32) fail('signalKey', 'signal key must be 32 bytes');
  if (init.signalKey.every((x) => x === 0)) fail('signalKey', 'all-zero signal key');
  const ts = init.timestamp ?? Math.floor(Date.now() / 1000);
  if (!Number.isInteger(ts) || ts < 0 || ts > 0xffffffff) fail('timestamp', 'timestamp out of range');
  if (!Array.isArray(init.interfaces) || init.interfaces.length > MAX_ADDR_INTERFACES) fail('interface', `at most ${MAX_ADDR_INTERFACES} interfaces`);
  if (!Array.isArray(init.signal) || init.signal.length > MAX_ADDR_SIGNAL) fail('signal', `at most ${MAX_ADDR_SIGNAL} signalling channels`);
  const head = Buffer.alloc(HEADER);
  head[0] = ADDR_VERSION;
  head.writeUInt32BE(ts, 1);
  identity.publicKey.copy(head, 5);
  Buffer.from(init.signalKey).copy(head, 37);
  const parts: Buffer[] = [head];
  init.interfaces.forEach((iface, i) => {
    const natCode = iface.nat === 'UNKNOWN' ? 0 : NAT_TYPE_CODE[iface.nat];
    if (natCode === undefined) fail('nat', `interface ${i}: unknown NAT type ${JSON.stringify(iface.nat)}`);
    const deltaCode = DELTA_TYPE_CODE[iface.delta?.type];
    if (deltaCode === undefined) fail('delta', `interface ${i}: unknown delta type ${JSON.stringify(iface.delta?.type)}`);
    const dv = iface.delta.value;
    if (!Number.isInteger(dv) || dv < -32768 || dv > 32767) fail('delta', `interface ${i}: delta value out of range`);
    if (!Array.isArray(iface.endpoints) || iface.endpoints.length > MAX_ADDR_ENDPOINTS) fail('endpoint', `interface ${i}: at most ${MAX_ADDR_ENDPOINTS} endpoints`);
    const v = [Buffer.from([natCode, deltaCode, (dv >> 8) & 0xff, dv & 0xff])];
    iface.endpoints.forEach((e, j) => {
      const ip = checkEndpoint(e, `interface ${i} endpoint ${j}`);
      const flags = KINDS.indexOf(e.kind) | (ip.length === 16 ? 0x08 : 0) | (e.proto === 'udp' ? 0x10 : 0);
      const port = Buffer.alloc(2);
      port.writeUInt16BE(e.port);
      v.push(Buffer.from([flags]), Buffer.from(ip), port);
    });
    writeRecord(parts, REC_INTERFACE, Buffer.concat(v));
  });
  for (const s of init.signal) {
    if (s?.type === 'mqtt') writeRecord(parts, REC_MQTT_URL, Buffer.from(checkBrokerUrl(s.url), 'utf8'));
    else if (s?.type === 'mqtt-self') {
      if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) fail('signal', 'self-hosted broker port out of range');
      const p = Buffer.alloc(2);
      p.writeUInt16BE(s.port);
      writeRecord(parts, REC_MQTT_SELF, p);
    } else fail('signal', `unknown signalling channel ${JSON.stringify((s as { type?: unknown })?.type)}`);
  }
  const body = Buffer.concat(parts);
  if (body.length + SIG_LEN > MAX_ADDR_BYTES) fail('length', `address too large (${body.length + SIG_LEN} > ${MAX_ADDR_BYTES} bytes)`);
  const sig = identity.sign(Buffer.concat([SIG_DOMAIN, body]));
  return ADDR_PREFIX + base58Encode(Buffer.concat([body, sig]));
}

/** Options of {@link parseAddress}. */
export interface ParseAddressOptions {
  /** Skip the signature check (for tooling that only displays addresses). @default false */
  skipSignature?: boolean;
}

/**
 * Parses and verifies an address. Every field is checked: the encoding, the version, each
 * record's length, NAT and delta codes, each endpoint (family, port 1–65535, address class
 * matching its kind: no loopback, unspecified, multicast or broadcast addresses), broker URLs, the
 * signature. Unknown optional records (type ≥ 0x80) are skipped.
 * @throws AddressError (code `ERR_BAD_ADDRESS`, `field` naming what was wrong) on anything else.
 */
export function parseAddress(text: string, opts: ParseAddressOptions = {}): PeerAddress {
  if (typeof text !== 'string') fail('encoding', `expected a string, got ${text === null ? 'null' : typeof text}`);
  const t = text.trim();
  if (t.length > MAX_ADDR_TEXT) fail('encoding', `longer than ${MAX_ADDR_TEXT} characters`);
  if (!t.startsWith(ADDR_PREFIX)) fail('encoding', `must start with "${ADDR_PREFIX}"`);
  let raw: Buffer;
  try {
    raw = base58Decode(t.slice(ADDR_PREFIX.length));
  } catch {
    fail('encoding', 'not base58');
  }
  if (raw.length > MAX_ADDR_BYTES) fail('length', `longer than ${MAX_ADDR_BYTES} bytes`);
  if (raw.length < HEADER + SIG_LEN) fail('length', `too short (${raw.length} bytes)`);
  if (raw[0] !== ADDR_VERSION) fail('version', `unsupported version ${raw[0] as number}`);
  const body = raw.subarray(0, raw.length - SIG_LEN);
  const sig = raw.subarray(raw.length - SIG_LEN);
  const timestamp = raw.readUInt32BE(1);
  const publicKey = Buffer.from(raw.subarray(5, 37));
  const signalKey = Buffer.from(raw.subarray(37, 69));
  if (signalKey.every((x) => x === 0)) fail('signalKey', 'all-zero signal key');
  const interfaces: AddrInterface[] = [];
  const signal: SignalChannel[] = [];
  let off = HEADER;
  while (off < body.length) {
    if (off + 3 > body.length) fail('record', 'truncated record header');
    const type = body[off] as number;
    const len = body.readUInt16BE(off + 1);
    off += 3;
    if (off + len > body.length) fail('record', `record of type ${type} overruns the address`);
    const v = body.subarray(off, off + len);
    off += len;
    if (type === REC_INTERFACE) {
      if (interfaces.length >= MAX_ADDR_INTERFACES) fail('interface', `more than ${MAX_ADDR_INTERFACES} interfaces`);
      interfaces.push(parseInterface(v, interfaces.length));
    } else if (type === REC_MQTT_URL || type === REC_MQTT_SELF) {
      if (signal.length >= MAX_ADDR_SIGNAL) fail('signal', `more than ${MAX_ADDR_SIGNAL} signalling channels`);
      if (type === REC_MQTT_URL) {
        const url = v.toString('utf8');
        if (!Buffer.from(url, 'utf8').equals(v)) fail('signal', 'broker URL is not valid UTF-8');
        signal.push({ type: 'mqtt', url: checkBrokerUrl(url) });
      } else {
        if (len !== 2) fail('signal', 'self-hosted broker record must be 2 bytes');
        const port = v.readUInt16BE(0);
        if (port === 0) fail('signal', 'self-hosted broker port 0');
        signal.push({ type: 'mqtt-self', port });
      }
    } else if (type < 0x80) {
      fail('record', `unknown record type ${type}`);
    }
  }
  if (!opts.skipSignature && !Identity.verify(publicKey, Buffer.concat([SIG_DOMAIN, body]), sig)) {
    fail('signature', 'the signature does not match the identity key');
  }
  const id = idFromPublicKey(publicKey);
  return Object.freeze({ text: t, publicKey, id, idHex: id.toString('hex'), signalKey, timestamp, interfaces, signal });
}

function parseInterface(v: Buffer, i: number): AddrInterface {
  if (v.length < 4) fail('interface', `interface ${i} record too short`);
  const natCode = v[0] as number;
  const nat: AddrNatType | undefined = natCode === 0 ? 'UNKNOWN' : NAT_BY_CODE.get(natCode);
  if (nat === undefined) fail('nat', `interface ${i}: unknown NAT type code ${natCode}`);
  const dtype = DELTA_BY_CODE.get(v[1] as number);
  if (dtype === undefined) fail('delta', `interface ${i}: unknown delta type code ${v[1] as number}`);
  const delta: AddrDelta = { type: dtype, value: v.readInt16BE(2) };
  const endpoints: AddrEndpoint[] = [];
  let off = 4;
  while (off < v.length) {
    if (endpoints.length >= MAX_ADDR_ENDPOINTS) fail('endpoint', `interface ${i}: more than ${MAX_ADDR_ENDPOINTS} endpoints`);
    const flags = v[off] as number;
    if (flags & 0xe0) fail('endpoint', `interface ${i}: reserved endpoint flag bits set`);
    const kind = KINDS[flags & 0x07];
    if (kind === undefined) fail('endpoint', `interface ${i}: unknown endpoint kind ${flags & 0x07}`);
    const ipLen = flags & 0x08 ? 16 : 4;
    if (off + 1 + ipLen + 2 > v.length) fail('endpoint', `interface ${i}: truncated endpoint`);
    const ip = v.subarray(off + 1, off + 1 + ipLen);
    const port = v.readUInt16BE(off + 1 + ipLen);
    off += 1 + ipLen + 2;
    const host = bytesToIp(ip);
    const e: AddrEndpoint = { kind, proto: flags & 0x10 ? 'udp' : 'tcp', host, port, family: ipLen === 16 ? 6 : 4 };
    if (port === 0) fail('endpoint', `interface ${i}: port 0`);
    const problem = kindProblem(kind, host, ip);
    if (problem) fail('endpoint', `interface ${i}: ${problem}`);
    endpoints.push(e);
  }
  return { nat, delta, endpoints };
}

/**
 * An address given by a caller: the text form is parsed ({@link parseAddress}); a parsed
 * {@link PeerAddress} is returned as it is, after a check of its shape.
 * @throws AddressError (field `'encoding'`) for anything else (`undefined`, a number, an
 *   object that is not a parsed address), or what {@link parseAddress} throws.
 */
export function toPeerAddress(a: unknown): PeerAddress {
  if (typeof a === 'string') return parseAddress(a);
  if (a !== null && typeof a === 'object') {
    const o = a as Partial<Record<keyof PeerAddress, unknown>>;
    if (
      Buffer.isBuffer(o.id) && o.id.length === 32 && typeof o.idHex === 'string' && Buffer.isBuffer(o.publicKey) && Buffer.isBuffer(o.signalKey) &&
      typeof o.timestamp === 'number' && Array.isArray(o.interfaces) && Array.isArray(o.signal)
    ) {
      return a as PeerAddress;
    }
    fail('encoding', 'expected an address string or a PeerAddress from parseAddress(), got an object that is neither');
  }
  fail('encoding', `expected an address string or a PeerAddress, got ${a === null ? 'null' : typeof a}`);
}

/** Whether two addresses (text or parsed) belong to the same node. @throws AddressError for a bad address. */
export function sameNode(a: PeerAddress | string, b: PeerAddress | string): boolean {
  return toPeerAddress(a).id.equals(toPeerAddress(b).id);
}

/**
 * A readable multi-line description of an address, text or parsed (for logs and `p2pd node`).
 * @throws AddressError for a bad address.
 */
export function describeAddress(addr: PeerAddress | string): string {
  const a = toPeerAddress(addr);
  const lines = [`id        ${a.idHex}`, `made      ${new Date(a.timestamp * 1000).toISOString()}`];
  a.interfaces.forEach((iface, i) => {
    const d = iface.delta.type === 'NA' ? '' : ` delta ${iface.delta.type}${iface.delta.value ? ` ${iface.delta.value}` : ''}`;
    lines.push(`iface ${i}   NAT ${iface.nat}${d}`);
    for (const e of iface.endpoints) {
      lines.push(`  ${e.kind.padEnd(10)} ${e.proto} ${e.family === 6 ? `[${e.host}]` : e.host}:${e.port}`);
    }
  });
  for (const s of a.signal) lines.push(`signal    ${s.type === 'mqtt' ? s.url : `mqtt broker on the node, port ${s.port}`}`);
  return lines.join('\n');
}
