/**
 * Loopback fakes for the port-mapping client tests: a NAT-PMP + PCP gateway on UDP, and a
 * UPnP IGD (SSDP responder on UDP + device description / SOAP over HTTP). Everything binds
 * to 127.0.0.x / ::1 on ephemeral ports; nothing is sent anywhere else.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import {
  NatPmpResult,
  decodeNatPmpRequest,
  decodePcpRequest,
  encodeNatPmpResponse,
  encodePcpResponse,
  type NatPmpRequest,
  type PcpRequest,
} from '../src/nat/portmap/index.js';

/** One request the fake gateway received. */
export interface GwRequest {
  raw: Buffer;
  from: RemoteInfo;
  natpmp?: NatPmpRequest;
  pcp?: PcpRequest;
  at: number;
}

/** Reply override: return datagrams to send instead of the normal answer (`[]` = stay silent), or undefined for normal. */
export type GwOverride = (req: GwRequest, gw: FakeGateway) => Buffer[] | undefined;

/** A NAT-PMP + PCP gateway on loopback UDP. */
export class FakeGateway {
  readonly requests: GwRequest[] = [];
  natpmp = true;
  pcp = true;
  silent = false;
  externalAddress = '203.0.113.7';
  natPmpAddressResult: number = NatPmpResult.SUCCESS;
  /** Result code for map requests (NAT-PMP and PCP use their own code spaces). */
  mapResult = 0;
  /** Port granted instead of the suggested one. */
  assignPort: ((suggested: number, internalPort: number) => number) | undefined;
  maxLifetime = 1e9;
  override: GwOverride | undefined;
  private started = performance.now();
  epochBase = 1000;

  private constructor(
    readonly socket: Socket,
    readonly host: string,
    readonly port: number,
  ) {}

  static async start(host = '127.0.0.1'): Promise<FakeGateway> {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((r) => s.bind(0, host, () => r()));
    const gw = new FakeGateway(s, host, s.address().port);
    s.on('message', (raw, from) => gw.onMessage(raw, from));
    return gw;
  }

  get epoch(): number {
    return this.epochBase + Math.floor((performance.now() - this.started) / 1000);
  }

  /** Loses all state: epoch restarts near 0. */
  reboot(): void {
    this.started = performance.now();
    this.epochBase = 0;
  }

  send(buf: Buffer, to: RemoteInfo, from: Socket = this.socket): void {
    from.send(buf, to.port, to.address);
  }

  maps(kind: 'natpmp' | 'pcp'): GwRequest[] {
    return this.requests.filter((r) => (kind === 'natpmp' ? r.natpmp?.kind === 'map' : r.pcp?.kind === 'map'));
  }

  private onMessage(raw: Buffer, from: RemoteInfo): void {
    const req: GwRequest = { raw, from, at: performance.now() };
    try {
      if (raw[0] === 0) req.natpmp = decodeNatPmpRequest(raw);
      else if (raw[0] === 2) req.pcp = decodePcpRequest(raw);
    } catch {
      /* recorded raw */
    }
    this.requests.push(req);
    const o = this.override?.(req, this);
    if (o) {
      for (const b of o) this.send(b, from);
      return;
    }
    if (this.silent) return;
    if (req.natpmp && this.natpmp) this.send(this.natPmpAnswer(req.natpmp), from);
    else if (req.pcp && this.pcp) this.send(this.pcpAnswer(req.pcp), from);
    else if (req.pcp && this.natpmp) this.send(encodeNatPmpResponse({ kind: 'header-only', op: 0x81, resultCode: NatPmpResult.UNSUPP_VERSION, epoch: this.epoch }), from);
  }

  natPmpAnswer(r: NatPmpRequest): Buffer {
    const epoch = this.epoch;
    if (r.kind === 'external-address') {
      return encodeNatPmpResponse({ kind: 'external-address', resultCode: this.natPmpAddressResult, epoch, externalAddress: this.natPmpAddressResult ? '0.0.0.0' : this.externalAddress });
    }
    const del = r.lifetime === 0;
    const port = del ? 0 : this.assignPort ? this.assignPort(r.externalPort, r.internalPort) : r.externalPort || r.internalPort;
    return encodeNatPmpResponse({
      kind: 'map',
      protocol: r.protocol,
      resultCode: this.mapResult,
      epoch,
      internalPort: r.internalPort,
      externalPort: this.mapResult ? 0 : port,
      lifetime: this.mapResult ? 0 : Math.min(r.lifetime, this.maxLifetime),
    });
  }

  pcpAnswer(r: PcpRequest): Buffer {
    const epoch = this.epoch;
    if (r.kind !== 'map') return encodePcpResponse({ kind: 'announce', resultCode: 0, lifetime: 0, epoch });
    const del = r.lifetime === 0;
    const port = del ? 0 : this.assignPort ? this.assignPort(r.externalPort, r.internalPort) : r.externalPort || r.internalPort;
    return encodePcpResponse({
      kind: 'map',
      resultCode: this.mapResult,
      lifetime: this.mapResult ? 30 : del ? 0 : Math.min(r.lifetime, this.maxLifetime),
      epoch,
      nonce: r.nonce,
      protocol: r.protocol,
      internalPort: r.internalPort,
      externalPort: this.mapResult ? r.externalPort : port,
      externalAddress: this.mapResult ? r.externalAddress : this.externalAddress,
    });
  }

  close(): Promise<void> {
    return new Promise((r) => this.socket.close(() => r()));
  }
}

/** One SOAP call the fake IGD received. */
export interface SoapCall {
  action: string;
  args: Record<string, string>;
  body: string;
  from: string;
}

/** HTTP behaviour override: handle the request yourself (return true) or fall through. */
export type HttpOverride = (req: IncomingMessage, res: ServerResponse, body: string, igd: FakeIgd) => boolean;

/** A UPnP IGD on loopback: SSDP responder (UDP) + HTTP description and SOAP control. */
export class FakeIgd {
  readonly calls: SoapCall[] = [];
  readonly searches: Array<{ text: string; from: RemoteInfo }> = [];
  version: 1 | 2 = 2;
  firewall6 = true;
  externalAddress = '198.51.100.10';
  ssdpSilent = false;
  /** Raw SSDP answers instead of the normal one. */
  ssdpOverride: ((from: RemoteInfo) => Buffer[]) | undefined;
  httpOverride: HttpOverride | undefined;
  /** SOAP fault to answer per action: `[code, description]`. */
  faults = new Map<string, [number, string]>();
  /** Ports AddAnyPortMapping reserves instead of the requested one. */
  anyPort: number | undefined;
  private pinholeId = 0;
  private readonly sockets = new Set<NetSocket>();

  private constructor(
    readonly ssdp: Socket,
    readonly http: Server,
    readonly host: string,
  ) {
    http.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  static async start(host = '127.0.0.1'): Promise<FakeIgd> {
    const ssdp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((r) => ssdp.bind(0, host, () => r()));
    const http = createServer();
    await new Promise<void>((r) => http.listen(0, host, () => r()));
    const igd = new FakeIgd(ssdp, http, host);
    ssdp.on('message', (m, from) => igd.onSearch(m, from));
    http.on('request', (req, res) => igd.onHttp(req, res));
    return igd;
  }

  get ssdpPort(): number {
    return this.ssdp.address().port;
  }
  get httpPort(): number {
    return (this.http.address() as AddressInfo).port;
  }
  get urlHost(): string {
    return this.host.includes(':') ? `[${this.host}]` : this.host;
  }
  get location(): string {
    return `http://${this.urlHost}:${this.httpPort}/rootDesc.xml`;
  }

  ssdpAnswer(location = this.location, st = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'): Buffer {
    return Buffer.from(
      `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:fake::${st}\r\nEXT:\r\nSERVER: fake UPnP/1.1\r\nLOCATION: ${location}\r\n\r\n`,
    );
  }

  private onSearch(m: Buffer, from: RemoteInfo): void {
    this.searches.push({ text: m.toString(), from });
    if (this.ssdpSilent) return;
    const out = this.ssdpOverride ? this.ssdpOverride(from) : [this.ssdpAnswer()];
    for (const b of out) this.ssdp.send(b, from.port, from.address);
  }

  description(): string {
    const v = this.version;
    const conn = `<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:${v}</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL></service>`;
    const fw = this.firewall6
      ? '<service><serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType><controlURL>/ctl/IP6FCtl</controlURL></service>'
      : '';
    return (
      `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><!-- <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>http://10.9.9.9/x</controlURL></service> -->` +
      `<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:${v}</deviceType><friendlyName>fake &amp; co</friendlyName>` +
      `<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:${v}</deviceType><deviceList><device><serviceList>${conn}${fw}</serviceList></device></deviceList></device></deviceList></device></root>`
    );
  }

  private soap(res: ServerResponse, status: number, xml: string): void {
    res.writeHead(status, { 'Content-Type': 'text/xml; charset="utf-8"' });
    res.end(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>${xml}</s:Body></s:Envelope>`);
  }

  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (this.httpOverride?.(req, res, body, this)) return;
      if (req.method === 'GET' && req.url === '/rootDesc.xml') {
        res.writeHead(200, { 'Content-Type': 'text/xml' });
        res.end(this.description());
        return;
      }
      const action = /#(\w+)"?$/.exec(String(req.headers.soapaction ?? ''))?.[1] ?? '';
      const args: Record<string, string> = {};
      for (const m of body.matchAll(/<(New\w+|\w+)>([^<]*)<\/\1>/g)) args[m[1] as string] = m[2] as string;
      this.calls.push({ action, args, body, from: req.socket.remoteAddress ?? '' });
      const f = this.faults.get(action);
      if (f) {
        this.soap(
          res,
          500,
          `<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${f[0]}</errorCode><errorDescription>${f[1]}</errorDescription></UPnPError></detail></s:Fault>`,
        );
        return;
      }
      const u = `xmlns:u="urn:schemas-upnp-org:service:${req.url === '/ctl/IP6FCtl' ? 'WANIPv6FirewallControl:1' : `WANIPConnection:${this.version}`}"`;
      switch (action) {
        case 'GetExternalIPAddress':
          return this.soap(res, 200, `<u:GetExternalIPAddressResponse ${u}><NewExternalIPAddress>${this.externalAddress}</NewExternalIPAddress></u:GetExternalIPAddressResponse>`);
        case 'AddAnyPortMapping':
          return this.soap(res, 200, `<u:AddAnyPortMappingResponse ${u}><NewReservedPort>${this.anyPort ?? args.NewExternalPort}</NewReservedPort></u:AddAnyPortMappingResponse>`);
        case 'AddPinhole':
          return this.soap(res, 200, `<u:AddPinholeResponse ${u}><UniqueID>${++this.pinholeId}</UniqueID></u:AddPinholeResponse>`);
        default:
          return this.soap(res, 200, `<u:${action}Response ${u}/>`);
      }
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return Promise.all([
      new Promise<void>((r) => this.ssdp.close(() => r())),
      new Promise<void>((r) => this.http.close(() => r())),
    ]).then(() => undefined);
  }
}

/** Counts of live handles by type (UDPWrap, TCPSocketWrap, ...), after letting closes settle. */
export async function handleCounts(): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 30));
  const out: Record<string, number> = {};
  for (const t of process.getActiveResourcesInfo()) out[t] = (out[t] ?? 0) + 1;
  return { UDPWrap: out.UDPWrap ?? 0, TCPSocketWrap: out.TCPSocketWrap ?? 0, TCPServerWrap: out.TCPServerWrap ?? 0 };
}
