/**
 * NAT detection: P2PD's seven NAT types with the RFC 4787 mapping/filtering behaviours
 * (RFC 5780, RFC 3489 fallback), and the port allocation delta.
 * @module
 */
export {
  detectNat, natTypeOf, mappingBehaviorOf, NAT_TYPES, NAT_TYPE_CODE,
  type DetectNatOptions, type NatBehavior, type NatDetection, type NatMethod, type NatProgress, type NatTestRecord, type NatType,
} from './nat-type.js';
export {
  detectDelta, classifyDelta, portDiff, DELTA_TYPES, DELTA_TYPE_CODE,
  type DeltaOptions, type DeltaResult, type DeltaType, type PortSample,
} from './delta.js';
