/**
 * PCP client (RFC 6887) over a UDP pipe: MAP create / renew / delete and ANNOUNCE. The
 * client's own address goes in every request (the pipe is bound to it, so it is the real
 * source address); renewals and deletions reuse the mapping's nonce (§11.2, §15); answers are
 * accepted only from the server's address and port and only when opcode, nonce, protocol and
 * internal port match; retransmissions follow §8.1.1 (IRT 3 s doubling with jitter), cut to
 * the caller's timeout. A version-0 answer means the gateway speaks NAT-PMP only.
 * @module
 */
import { InvalidArgumentError, PortMappingError } from '../../errors.js';
import { ipFamily } from '../../interfaces/ip.js';
import type { Endpoint } from '../../interfaces/endpoint.js';
import { natPmpResultName } from './natpmp-codec.js';
import {
  PcpProtocolNumber,
  PcpResult,
  decodePcpResponse,
  encodePcpRequest,
  generatePcpNonce,
  pcpResponseMatches,
  pcpResultName,
  type PcpMapRequest,
  type PcpRequest,
  type PcpResponse,
} from './pcp-codec.js';
import { checkPcpEpoch, pcpRetransmitSchedule, type PcpScheduleOptions } from './retransmit.js';
import { callTimeout, gatewayEndpoint, gatewayEpoch, routeSourceAddress, stepBudget, udpExchange, type GatewayEpoch, type PortMapCallOptions } from './transport.js';
import { PORTMAP_SERVER_PORT, canonicalIp, peekPortMapHeader, rdU16 } from './wire.js';

/** Default time budget of one PCP operation when neither the call nor the schedule caps it, ms. */
export const PCP_DEFAULT_TIMEOUT_MS = 30_000;

/** Options of {@link PcpClient}. */
export interface PcpClientOptions {
  /** The PCP server (normally the default gateway), IPv4 or IPv6 (`fe80::1%eth0` allowed). */
  gateway: string;
  /** UDP port of the server. @default 5351 */
  port?: number;
  /**
   * This host's address, sent as the PCP client address and bound as the source.
   * @default the source address the OS picks towards the gateway
   */
  localAddress?: string;
  /** Retransmission schedule. @default RFC 6887 §8.1.1 (IRT 3 s, MRT 1024 s), capped at 30 s per operation */
  retransmit?: PcpScheduleOptions;
}

/** Protocol of a PCP mapping: `'udp'`, `'tcp'` or an IANA protocol number. */
export type PcpProtocol = 'udp' | 'tcp' | number;

/** Request of {@link PcpClient.map}. */
export interface PcpMapInit {
  protocol: PcpProtocol;
  /** Local port, 1-65535. */
  internalPort: number;
  /** Suggested external port (0 = no preference). @default internalPort */
  externalPort?: number;
  /** Suggested external address. @default `'0.0.0.0'` / `'::'` (none) for an IPv4 / IPv6 client */
  externalAddress?: string;
  /** Requested lifetime, seconds (> 0). @default 7200 */
  lifetime?: number;
  /** Nonce of the mapping: pass the one of an existing mapping to renew it. @default a fresh random nonce */
  nonce?: Uint8Array;
}

/** A mapping granted by the server. */
export interface PcpGrant {
  /** The mapping's nonce: renew and delete with it. */
  nonce: Uint8Array;
  /** IANA protocol number. */
  protocol: number;
  internalPort: number;
  /** The client address the mapping is for. */
  internalAddress: string;
  externalPort: number;
  externalAddress: string;
  /** Lifetime granted, seconds. */
  lifetime: number;
  /** Server epoch, seconds. */
  epoch: number;
  /** Set when this response's epoch shows the server lost its state since the last response. */
  lostState?: string;
}

function protoNumber(p: PcpProtocol): number {
  if (p === 'udp') return PcpProtocolNumber.UDP;
  if (p === 'tcp') return PcpProtocolNumber.TCP;
  if (typeof p === 'number' && Number.isInteger(p) && p >= 1 && p <= 255) return p;
  throw new InvalidArgumentError(`invalid PCP protocol ${String(p)} ('udp', 'tcp' or 1-255)`);
}

/** A PCP client for one server. Holds no socket between calls. */
export class PcpClient {
  /** The server's endpoint. */
  readonly server: Endpoint;
  /** Reboot detection shared by every client of this server in the process. */
  readonly epoch: GatewayEpoch;
  private localAddress: string | undefined;
  private readonly schedule: PcpScheduleOptions;

  constructor(opts: PcpClientOptions) {
    if (opts === null || typeof opts !== 'object') throw new InvalidArgumentError('PcpClient options must be an object');
    const port = opts.port ?? PORTMAP_SERVER_PORT;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`invalid gateway port ${String(port)}`);
    this.server = gatewayEndpoint(opts.gateway, port);
    if (opts.localAddress !== undefined) {
      if (ipFamily(opts.localAddress) !== this.server.family) {
        throw new InvalidArgumentError(`PCP local address ${JSON.stringify(String(opts.localAddress).slice(0, 64))} must have the gateway's family`);
      }
      this.localAddress = opts.localAddress.split('%')[0];
    }
    this.schedule = { ...opts.retransmit };
    pcpRetransmitSchedule(this.schedule).next(); // validates
    this.epoch = gatewayEpoch('pcp', this.server, checkPcpEpoch);
  }

  /**
   * The client address used in requests (looked up once from the routing table if not given;
   * the lookup is bounded by `opts`, see `routeSourceAddress`).
   */
  async clientAddress(opts?: PortMapCallOptions): Promise<string> {
    this.localAddress ??= await routeSourceAddress(this.server, opts);
    return this.localAddress;
  }

  private async exchange(req: PcpRequest, what: string, opts?: PortMapCallOptions): Promise<{ res: PcpResponse; lostState?: string }> {
    const t = callTimeout(opts);
    const capped = this.schedule.totalTimeoutMs || this.schedule.mrdMs || this.schedule.maxAttempts || this.schedule.mrc;
    const total = t ?? (capped ? undefined : PCP_DEFAULT_TIMEOUT_MS);
    const waits = pcpRetransmitSchedule({ ...this.schedule, ...(total ? { totalTimeoutMs: total } : {}) });
    const res = await udpExchange<PcpResponse>({
      method: 'pcp',
      what,
      server: this.server,
      localAddress: this.localAddress,
      request: encodePcpRequest(req),
      waits,
      signal: opts?.signal,
      accept: (data) => {
        if (data.length >= 8 && data[0] === 0 && (data[1] as number) >= 128) {
          // RFC 6887 §9: a NAT-PMP-only gateway answers a PCP request with a NAT-PMP UNSUPP_VERSION.
          const peek = peekPortMapHeader(data);
          const rc = rdU16(data, 2, 'NAT-PMP header');
          throw new PortMappingError('pcp', `${what}: gateway speaks NAT-PMP only (version-0 answer, opcode ${peek.opcode}, ${natPmpResultName(rc)})`, {
            resultCode: PcpResult.UNSUPP_VERSION,
          });
        }
        let r: PcpResponse;
        try {
          r = decodePcpResponse(data);
        } catch (e) {
          return { ignore: (e as Error).message };
        }
        if (!pcpResponseMatches(req, r)) return { ignore: 'response does not match the request (opcode/nonce/protocol/port)' };
        return r;
      },
    });
    const lostState = this.epoch.observe(res.epoch);
    if (res.resultCode !== PcpResult.SUCCESS) {
      const v = res.version !== 2 ? ` (server speaks PCP version ${res.version})` : '';
      throw new PortMappingError('pcp', `${what}: server answered ${pcpResultName(res.resultCode)}${v}`, { resultCode: res.resultCode });
    }
    return lostState === undefined ? { res } : { res, lostState };
  }

  /**
   * Creates (fresh nonce) or renews (the mapping's nonce) a MAP mapping. The server may
   * grant another port, address or lifetime; a success with lifetime 0 is a
   * {@link PortMappingError}.
   */
  async map(init: PcpMapInit, opts?: PortMapCallOptions): Promise<PcpGrant> {
    if (init === null || typeof init !== 'object') throw new InvalidArgumentError('map request must be an object');
    const protocol = protoNumber(init.protocol);
    const internalPort = init.internalPort;
    if (!Number.isInteger(internalPort) || internalPort < 1 || internalPort > 65535) throw new InvalidArgumentError(`invalid internal port ${String(internalPort)}`);
    const lifetime = init.lifetime ?? 7200;
    if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 0xffffffff) throw new InvalidArgumentError(`invalid lifetime ${String(lifetime)} s`);
    const step = stepBudget(opts); // the address lookup and the exchange share opts.timeout
    const clientAddress = await this.clientAddress(step());
    const nonce = init.nonce ?? generatePcpNonce();
    const req: PcpMapRequest = {
      kind: 'map',
      lifetime,
      clientAddress,
      nonce,
      protocol,
      internalPort,
      externalPort: init.externalPort ?? internalPort,
      externalAddress: init.externalAddress ?? (this.server.family === 6 ? '::' : '0.0.0.0'),
    };
    const what = `PCP map ${init.protocol} ${internalPort}`;
    const { res, lostState } = await this.exchange(req, what, step());
    if (res.kind !== 'map') throw new PortMappingError('pcp', `${what}: unexpected response`);
    if (res.lifetime === 0 || res.externalPort === 0) {
      throw new PortMappingError('pcp', `${what}: server granted nothing (lifetime ${res.lifetime}, external port ${res.externalPort})`);
    }
    const g: PcpGrant = {
      nonce,
      protocol,
      internalPort,
      internalAddress: clientAddress,
      externalPort: res.externalPort,
      externalAddress: canonicalIp(res.externalAddress) ?? res.externalAddress,
      lifetime: res.lifetime,
      epoch: res.epoch,
    };
    if (lostState !== undefined) g.lostState = lostState;
    return g;
  }

  /** Deletes a mapping: MAP with lifetime 0 and the mapping's nonce (RFC 6887 §15). */
  async unmap(m: { nonce: Uint8Array; protocol: PcpProtocol; internalPort: number }, opts?: PortMapCallOptions): Promise<void> {
    if (m === null || typeof m !== 'object') throw new InvalidArgumentError('unmap expects { nonce, protocol, internalPort }');
    const step = stepBudget(opts);
    const clientAddress = await this.clientAddress(step());
    const req: PcpMapRequest = {
      kind: 'map',
      lifetime: 0,
      clientAddress,
      nonce: m.nonce,
      protocol: protoNumber(m.protocol),
      internalPort: m.internalPort,
      externalPort: 0,
      externalAddress: this.server.family === 6 ? '::' : '0.0.0.0',
    };
    await this.exchange(req, `PCP unmap ${m.protocol} ${m.internalPort}`, step());
  }

  /** ANNOUNCE (opcode 0): checks the server is there and returns its epoch. */
  async announce(opts?: PortMapCallOptions): Promise<{ epoch: number }> {
    const step = stepBudget(opts);
    const clientAddress = await this.clientAddress(step());
    const { res } = await this.exchange({ kind: 'announce', lifetime: 0, clientAddress }, 'PCP announce', step());
    return { epoch: res.epoch };
  }
}
