/**
 * Port mapping on the local gateway: `mapPort()` / `getExternalAddress()` over UPnP IGD
 * (v1/v2, IPv6 pinholes), NAT-PMP (RFC 6886) and PCP (RFC 6887), the `PortMapping` handle
 * that renews and deletes, the protocol clients, and their pure building blocks (wire
 * codecs, retransmission schedules, epoch validation, renewal timing).
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
export { GatewayEpoch, routeSourceAddress, type PortMapCallOptions, type LostStateListener } from './transport.js';
export { NatPmpClient, type NatPmpClientOptions, type NatPmpGrant, type NatPmpMapInit } from './natpmp-client.js';
export { PcpClient, PCP_DEFAULT_TIMEOUT_MS, type PcpClientOptions, type PcpGrant, type PcpMapInit, type PcpProtocol } from './pcp-client.js';
export {
  UPNP_MAX_XML_BYTES,
  UPNP_MAX_SERVICES,
  xmlEscape,
  xmlUnescape,
  parseIgdDescription,
  type IgdDescription,
  type UpnpService,
} from './upnp-xml.js';
export {
  SSDP_PORT,
  SSDP_MULTICAST_V4,
  SSDP_MULTICAST_V6,
  IGD_SEARCH_TARGETS,
  SSDP_SEARCH_TIMEOUT,
  ssdpSearch,
  parseSsdpResponse,
  encodeMSearch,
  type SsdpResponse,
  type SsdpSearchOptions,
} from './upnp-ssdp.js';
export {
  UpnpClient,
  UpnpErrorCode,
  UPNP_MAX_LEASE,
  UPNP_MAX_PINHOLE_LEASE,
  UPNP_DISCOVER_TIMEOUT,
  soapEnvelope,
  parseSoapFault,
  type UpnpCallOptions,
  type UpnpDiscoverOptions,
  type SoapResult,
} from './upnp-client.js';
export { ExternalPortUnavailableError } from './drivers.js';
export { PortMapping, RENEW_TIMEOUT, type PortMappingCallbacks, type PortMappingState, type MappingGrant } from './mapping.js';
export {
  mapPort,
  getExternalAddress,
  PortMappingFailedError,
  DEFAULT_PORTMAP_METHODS,
  DEFAULT_METHOD_TIMEOUT_MS,
  DEFAULT_MAPPING_LIFETIME,
  type MapPortOptions,
  type GatewayOptions,
  type GatewayTargetOptions,
  type PortMappingAttempt,
} from './map-port.js';
