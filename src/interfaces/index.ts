/**
 * The interfaces layer: what this machine's network interfaces are, which one is the
 * default, the scope of an address, and endpoint parsing/formatting. Purely local: nothing
 * here sends anything on the network.
 * @module
 */
export * from './endpoint.js';
export {
  MAX_IP_LITERAL_LENGTH,
  bytesToIp,
  ipFamily,
  ipToBytes,
  isMappedIPv4,
  unmapIPv4,
  type BytesToIpOptions,
  type MappedIPv4Format,
} from './ip.js';
export { ADDRESS_SCOPES, ipScope, isUnspecified, type AddressScope } from './scope.js';
export {
  PROC_NET_IPV6_ROUTE,
  PROC_NET_ROUTE,
  bestDefaultRoute,
  defaultGateway,
  parseProcNetIpv6Route,
  parseProcNetRoute,
  readRouteTable,
  type DefaultRoute,
  type Endianness,
  type ReadRouteTableOptions,
  type RouteTable,
} from './routes.js';
export {
  Interface,
  Interfaces,
  getDefaultInterface,
  getInterface,
  getInterfaces,
  initP2pd,
  type DefaultFlags,
  type Gateways,
  type InitOptions,
  type InterfaceAddress,
  type InterfaceInit,
} from './interfaces.js';
