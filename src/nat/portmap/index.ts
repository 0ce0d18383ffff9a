/**
 * NAT-PMP (RFC 6886) and PCP (RFC 6887) building blocks: pure wire codecs, retransmission
 * schedules, epoch validation and renewal timing. The clients built on UDP pipes come later.
 * @module
 */
export {
  PORTMAP_SERVER_PORT,
  PORTMAP_CLIENT_PORT,
  ipv4ToBytes,
  bytesToIpv4,
  ipToBytes16,
  bytes16ToIp,
  formatIpv6,
  canonicalIp,
  isFromServer,
  peekPortMapHeader,
  type PortMapHeaderPeek,
} from './wire.js';
export * from './natpmp-codec.js';
export * from './pcp-codec.js';
export * from './retransmit.js';
