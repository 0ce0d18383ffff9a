/**
 * NAT-PMP client (RFC 6886) over a UDP pipe: external address, map, renew, unmap. Every
 * exchange follows the RFC retransmission schedule (250 ms doubling, cut to the caller's
 * timeout), accepts only datagrams from the gateway's address and port, ignores malformed
 * or unrelated answers, and feeds each response's epoch to the gateway's reboot detector.
 * @module
 */
import { InvalidArgumentError, PortMappingError } from '../../errors.js';
import { ipFamily } from '../../interfaces/ip.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import {
  NATPMP_RECOMMENDED_LIFETIME,
  NatPmpResult,
  decodeNatPmpResponse,
  encodeNatPmpRequest,
  natPmpResponseMatches,
  natPmpResultMessage,
  natPmpResultName,
  type NatPmpProtocol,
  type NatPmpRequest,
  type NatPmpResponse,
} from './natpmp-codec.js';
import { checkNatPmpEpoch, natPmpRetransmitSchedule, type NatPmpScheduleOptions } from './retransmit.js';
import { callTimeout, gatewayEndpoint, gatewayEpoch, udpExchange, type GatewayEpoch, type PortMapCallOptions } from './transport.js';
import { PORTMAP_SERVER_PORT } from './wire.js';

/** Options of {@link NatPmpClient}. */
export interface NatPmpClientOptions {
  /** The gateway's IPv4 address (NAT-PMP is IPv4 only). */
  gateway: string;
  /** UDP port of the gateway's NAT-PMP server. @default 5351 */
  port?: number;
  /** Local address to send from (mappings are made for this address). @default the wildcard: the OS picks */
  localAddress?: string;
  /** Retransmission schedule. @default RFC 6886 §3.1: 250 ms doubling, 9 transmissions (127.75 s) */
  retransmit?: NatPmpScheduleOptions;
}

/** A mapping granted by the gateway. */
export interface NatPmpGrant {
  protocol: NatPmpProtocol;
  internalPort: number;
  /** The external port actually mapped (may differ from the suggested one). */
  externalPort: number;
  /** Lifetime granted, seconds. */
  lifetime: number;
  /** Gateway epoch (seconds since its mapping state started). */
  epoch: number;
  /** Set when this response's epoch shows the gateway lost its state since the last response. */
  lostState?: string;
}

/** Request of {@link NatPmpClient.map}. */
export interface NatPmpMapInit {
  protocol: NatPmpProtocol;
  /** Local port to map, 1-65535. */
  internalPort: number;
  /** Suggested external port. @default internalPort */
  externalPort?: number;
  /** Requested lifetime, seconds (> 0). @default 7200 */
  lifetime?: number;
}

function checkPortNumber(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 65535) {
    throw new InvalidArgumentError(`invalid ${what}: ${String(v)} (must be an integer ${min}-65535)`);
  }
  return v;
}

/** A NAT-PMP client for one gateway. Holds no socket between calls. */
export class NatPmpClient {
  /** The gateway's NAT-PMP endpoint. */
  readonly server: Endpoint;
  /** Local address requests are sent from, if fixed. */
  readonly localAddress: string | undefined;
  /** Reboot detection shared by every client of this gateway in the process. */
  readonly epoch: GatewayEpoch;
  private readonly schedule: NatPmpScheduleOptions;

  constructor(opts: NatPmpClientOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('NatPmpClient options must be an object');
    if (ipFamily(opts.gateway) !== 4) throw new InvalidArgumentError(`NAT-PMP needs an IPv4 gateway, got ${JSON.stringify(String(opts.gateway).slice(0, 64))}`);
    this.server = gatewayEndpoint(opts.gateway, checkPortNumber(opts.port ?? PORTMAP_SERVER_PORT, 'gateway port', 1));
    if (opts.localAddress !== undefined && ipFamily(opts.localAddress) !== 4) {
      throw new InvalidArgumentError(`NAT-PMP local address must be IPv4, got ${JSON.stringify(String(opts.localAddress).slice(0, 64))}`);
    }
    this.localAddress = opts.localAddress;
    this.schedule = { ...opts.retransmit };
    natPmpRetransmitSchedule(this.schedule); // validates
    this.epoch = gatewayEpoch('nat-pmp', this.server, checkNatPmpEpoch);
  }

  private waits(opts?: PortMapCallOptions): number[] {
    const t = callTimeout(opts);
    const cap = this.schedule.totalTimeoutMs;
    const total = t === undefined ? cap : cap ? Math.min(cap, t) : t;
    return natPmpRetransmitSchedule({ ...this.schedule, ...(total ? { totalTimeoutMs: total } : {}) });
  }

  private async exchange(req: NatPmpRequest, what: string, opts?: PortMapCallOptions): Promise<{ res: NatPmpResponse; lostState?: string }> {
    const waits = this.waits(opts);
    const res = await udpExchange<NatPmpResponse>({
      method: 'nat-pmp',
      what,
      server: this.server,
      localAddress: this.localAddress,
      request: encodeNatPmpRequest(req),
      waits,
      signal: opts?.signal,
      accept: (data) => {
        let r: NatPmpResponse;
        try {
          r = decodeNatPmpResponse(data);
        } catch (e) {
          return { ignore: (e as Error).message };
        }
        if (!natPmpResponseMatches(req, r)) return { ignore: `response opcode ${data[1]} does not answer this request` };
        return r;
      },
    });
    const lostState = this.epoch.observe(res.epoch);
    if (res.resultCode !== NatPmpResult.SUCCESS) {
      throw new PortMappingError(
        'nat-pmp',
        `${what}: gateway answered ${natPmpResultName(res.resultCode)} (${natPmpResultMessage(res.resultCode)})`,
        { resultCode: res.resultCode },
      );
    }
    return lostState === undefined ? { res } : { res, lostState };
  }

  /**
   * The gateway's external IPv4 address (opcode 0). Rejects with {@link PortMappingError}
   * (e.g. `resultCode` 3 NETWORK_FAILURE from a gateway whose WAN address is unusable).
   */
  async externalAddress(opts?: PortMapCallOptions): Promise<{ externalAddress: string; epoch: number }> {
    const { res } = await this.exchange({ kind: 'external-address' }, 'NAT-PMP external address', opts);
    if (res.kind !== 'external-address') throw new PortMappingError('nat-pmp', 'NAT-PMP external address: unexpected response');
    return { externalAddress: res.externalAddress, epoch: res.epoch };
  }

  /**
   * Creates or renews (same request again) a mapping. The gateway may grant another external
   * port or a shorter/longer lifetime; a success with lifetime 0 is a {@link PortMappingError}.
   */
  async map(init: NatPmpMapInit, opts?: PortMapCallOptions): Promise<NatPmpGrant> {
    if (init === null || typeof init !== 'object') throw new InvalidArgumentError('map request must be an object');
    if (init.protocol !== 'udp' && init.protocol !== 'tcp') throw new InvalidArgumentError(`invalid protocol ${String(init.protocol)} (must be 'udp' or 'tcp')`);
    const internalPort = checkPortNumber(init.internalPort, 'internal port', 1);
    const externalPort = checkPortNumber(init.externalPort ?? internalPort, 'external port', 0);
    const lifetime = init.lifetime ?? NATPMP_RECOMMENDED_LIFETIME;
    if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 0xffffffff) throw new InvalidArgumentError(`invalid lifetime ${String(lifetime)} s`);
    const req: NatPmpRequest = { kind: 'map', protocol: init.protocol, internalPort, externalPort, lifetime };
    const what = `NAT-PMP map ${init.protocol} ${internalPort}`;
    const { res, lostState } = await this.exchange(req, what, opts);
    if (res.kind !== 'map') throw new PortMappingError('nat-pmp', `${what}: unexpected response`);
    if (res.lifetime === 0 || res.externalPort === 0) {
      throw new PortMappingError('nat-pmp', `${what}: gateway granted nothing (lifetime ${res.lifetime}, external port ${res.externalPort})`);
    }
    const g: NatPmpGrant = {
      protocol: init.protocol,
      internalPort,
      externalPort: res.externalPort,
      lifetime: res.lifetime,
      epoch: res.epoch,
    };
    if (lostState !== undefined) g.lostState = lostState;
    return g;
  }

  /** Deletes the mapping of `internalPort` (lifetime 0, suggested external port 0: RFC 6886 §3.4). */
  async unmap(protocol: NatPmpProtocol, internalPort: number, opts?: PortMapCallOptions): Promise<void> {
    if (protocol !== 'udp' && protocol !== 'tcp') throw new InvalidArgumentError(`invalid protocol ${String(protocol)}`);
    checkPortNumber(internalPort, 'internal port', 1);
    await this.exchange({ kind: 'map', protocol, internalPort, externalPort: 0, lifetime: 0 }, `NAT-PMP unmap ${protocol} ${internalPort}`, opts);
  }
}
