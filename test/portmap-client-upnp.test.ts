/**
 * UPnP half of the port-mapping client against a fake IGD on loopback (SSDP responder +
 * HTTP description/SOAP): discovery, IGD v1/v2, escaping, faults, renewal, IPv6 pinholes,
 * and the bad-input list (SSDP and HTTP/SOAP).
 */
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PortMappingError } from '../src/errors.js';
import {
  PortMappingFailedError,
  UpnpClient,
  getExternalAddress,
  mapPort,
  parseIgdDescription,
  parseSoapFault,
  parseSsdpResponse,
  soapEnvelope,
  xmlEscape,
  xmlUnescape,
  type MapPortOptions,
} from '../src/nat/portmap/index.js';
import { main as mapPortExample } from '../examples/map-port.js';
import { FakeGateway, FakeIgd, handleCounts } from './portmap-client-fakes.js';

let igd: FakeIgd;
let base: Record<string, number>;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeEach(async () => {
  base = await handleCounts();
  igd = await FakeIgd.start();
});
afterEach(async () => {
  await igd.close();
  expect(await handleCounts()).toEqual(base);
});

const opts = (o: Partial<MapPortOptions> = {}): MapPortOptions => ({
  internalPort: 7777,
  protocol: 'udp',
  gateway: { host: '127.0.0.1', ssdp: `127.0.0.1:${igd.ssdpPort}` },
  methods: ['upnp'],
  methodTimeout: 1_500,
  ...o,
});

describe('UPnP', () => {
  it('finds the IGD by SSDP, maps with AddAnyPortMapping (v2), deletes on close', async () => {
    igd.anyPort = 8890;
    const m = await mapPort(opts({ externalPort: 8888, lifetime: 3600, description: 'a<b>&"c\'' }));
    expect(m).toMatchObject({ method: 'upnp', externalAddress: '198.51.100.10', externalPort: 8890, internalAddress: '127.0.0.1', lifetime: 3600 });
    expect(igd.searches[0]?.text).toMatch(/^M-SEARCH \* HTTP\/1\.1\r\n[\s\S]*ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n/);
    const add = igd.calls.find((c) => c.action === 'AddAnyPortMapping')!;
    expect(add.args).toMatchObject({ NewExternalPort: '8888', NewProtocol: 'UDP', NewInternalPort: '7777', NewInternalClient: '127.0.0.1', NewLeaseDuration: '3600' });
    expect(add.body).toContain('<NewPortMappingDescription>a&lt;b&gt;&amp;&quot;c&apos;</NewPortMappingDescription>');
    await m.close();
    expect(igd.calls.at(-1)).toMatchObject({ action: 'DeletePortMapping', args: { NewExternalPort: '8890', NewProtocol: 'UDP' } });
  });

  it('IGD v1: AddPortMapping; a conflict is a PortMappingError with UPnP code 718', async () => {
    igd.version = 1;
    const m = await mapPort(opts({ externalPort: 8888 }));
    expect(igd.calls.map((c) => c.action)).toContain('AddPortMapping');
    expect(m.externalPort).toBe(8888);
    await m.close();
    igd.faults.set('AddPortMapping', [718, 'ConflictInMappingEntry']);
    const e = (await mapPort(opts({ externalPort: 8888 })).catch((x: unknown) => x)) as PortMappingFailedError;
    expect(e).toBeInstanceOf(PortMappingFailedError);
    expect(e).toMatchObject({ method: 'upnp', resultCode: 718 });
    expect(e.message).toMatch(/718 ConflictInMappingEntry/);
  });

  it('renews by repeating AddPortMapping on the same external port', async () => {
    igd.anyPort = 9000;
    let renewals = 0;
    const m = await mapPort(opts({ lifetime: 2, minRenewGapMs: 100, onRenew: () => renewals++ }));
    await sleep(2_300);
    expect(renewals).toBeGreaterThanOrEqual(2);
    const renews = igd.calls.filter((c) => c.action === 'AddPortMapping');
    expect(renews.every((c) => c.args.NewExternalPort === '9000')).toBe(true);
    await m.close();
  });

  it('only permanent leases (725): retried with lease 0, nothing to renew', async () => {
    igd.version = 1;
    igd.httpOverride = (req, res, body) => {
      if (!/#AddPortMapping/.test(String(req.headers.soapaction)) || /<NewLeaseDuration>0</.test(body)) return false;
      res.writeHead(500, { 'Content-Type': 'text/xml' });
      res.end('<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>');
      return true;
    };
    const m = await mapPort(opts());
    expect(m.expiresAt).toBeUndefined();
    expect(m.lifetime).toBe(0);
    await m.close();
  });

  it("miniupnpd's reserved WAN address (0.0.0.0): the mapping works, the address is unknown", async () => {
    igd.externalAddress = '0.0.0.0';
    const m = await mapPort(opts());
    expect(m.externalAddress).toBeUndefined();
    await m.close();
    const gw = await FakeGateway.start();
    try {
      // getExternalAddress: UPnP fails (0.0.0.0), NAT-PMP answers.
      const a = await getExternalAddress({ gateway: { host: '127.0.0.1', port: gw.port, ssdp: `127.0.0.1:${igd.ssdpPort}` }, methodTimeout: 1000 });
      expect(a).toBe('203.0.113.7');
    } finally {
      await gw.close();
    }
    igd.externalAddress = '198.51.100.10'; // documentation range: returned as is
    expect(await getExternalAddress({ gateway: { host: '127.0.0.1', ssdp: `127.0.0.1:${igd.ssdpPort}` }, methods: ['upnp'] })).toBe('198.51.100.10');
  });

  it('a known LOCATION skips SSDP', async () => {
    const m = await mapPort(opts({ gateway: { host: '127.0.0.1', location: igd.location } }));
    expect(igd.searches).toHaveLength(0);
    await m.close();
  });

  it('IPv6 pinhole: AddPinhole, UpdatePinhole on renewal, DeletePinhole on close', async () => {
    const v6 = await FakeIgd.start('::1');
    try {
      const m = await mapPort(opts({ family: 6, gateway: { host: '::1', ssdp: `[::1]:${v6.ssdpPort}` }, lifetime: 2, minRenewGapMs: 100 }));
      expect(m).toMatchObject({ family: 6, externalAddress: '::1', externalPort: 7777, internalAddress: '::1' });
      await sleep(1_300);
      await m.close();
      const actions = v6.calls.map((c) => c.action);
      expect(actions[0]).toBe('AddPinhole');
      expect(v6.calls[0]!.args).toMatchObject({ InternalClient: '::1', InternalPort: '7777', Protocol: '17', LeaseTime: '2' });
      expect(actions).toContain('UpdatePinhole');
      expect(v6.calls.at(-1)).toMatchObject({ action: 'DeletePinhole', args: { UniqueID: '1' } });
    } finally {
      await v6.close();
    }
  });
});

describe('examples/map-port.ts over UPnP', () => {
  it('718 on 8888 and 8889, maps 8890, deletes it', async () => {
    igd.httpOverride = (req, res, body) => {
      if (!/#AddPortMapping/.test(String(req.headers.soapaction)) || !/<NewExternalPort>(8888|8889)</.test(body)) return false;
      res.writeHead(500, { 'Content-Type': 'text/xml' });
      res.end('<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>');
      return true;
    };
    const r = await mapPortExample({ gateway: { host: '127.0.0.1', ssdp: `127.0.0.1:${igd.ssdpPort}` }, methods: ['upnp'], log: () => undefined });
    expect(r).toMatchObject({ tried: [8888, 8889, 8890], method: 'upnp', externalPort: 8890, externalAddress: '198.51.100.10', deleted: true });
    expect(igd.calls.filter((c) => c.action.endsWith('PortMapping')).map((c) => `${c.action} ${c.args.NewExternalPort}`)).toEqual([
      'AddPortMapping 8890',
      'DeletePortMapping 8890',
    ]);
  });
});

describe('UPnP bad input: ignored or a typed error, never a crash or a hang', () => {
  const ssdpCases: Record<string, (i: FakeIgd) => Buffer[]> = {
    'truncated response': (i) => [i.ssdpAnswer().subarray(0, 30)],
    'oversized response': (i) => [Buffer.concat([i.ssdpAnswer(), Buffer.alloc(9000, 0x41)])],
    'not 200': () => [Buffer.from('HTTP/1.1 404 Not Found\r\nST: upnp:rootdevice\r\nLOCATION: http://127.0.0.1:1/x\r\n\r\n')],
    'LOCATION with a host name': (i) => [i.ssdpAnswer(`http://router.local:${i.httpPort}/rootDesc.xml`)],
    'LOCATION on another host': (i) => [i.ssdpAnswer(`http://10.99.99.99:${i.httpPort}/rootDesc.xml`)],
    'LOCATION https': (i) => [i.ssdpAnswer(`https://127.0.0.1:${i.httpPort}/rootDesc.xml`)],
    'not an IGD': (i) => [i.ssdpAnswer(undefined, 'urn:schemas-upnp-org:device:MediaServer:1')],
    'binary garbage': () => [Buffer.from([0, 1, 2, 255, 254]), Buffer.alloc(0)],
    silence: () => [],
  };
  for (const [name, f] of Object.entries(ssdpCases)) {
    it(`SSDP: ${name}`, async () => {
      igd.ssdpOverride = () => f(igd);
      const t0 = performance.now();
      const e = (await mapPort(opts({ methodTimeout: 1_200 })).catch((x: unknown) => x)) as PortMappingFailedError;
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect(e.attempts[0]?.error.message).toMatch(/no Internet Gateway Device answered/);
      expect(igd.calls).toHaveLength(0); // never followed a bad LOCATION
    });
  }

  it('SSDP: an answer from the wrong source is ignored', async () => {
    const spoof = createSocket('udp4');
    await new Promise<void>((r) => spoof.bind(0, '127.0.0.2', () => r()));
    igd.ssdpOverride = (from) => {
      spoof.send(igd.ssdpAnswer(), from.port, from.address);
      return [];
    };
    try {
      const e = (await mapPort(opts({ methodTimeout: 1_200 })).catch((x: unknown) => x)) as PortMappingFailedError;
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect(e.message).toMatch(/ignored \d+ response/);
    } finally {
      await new Promise<void>((r) => spoof.close(() => r()));
    }
  });

  const httpCases: Record<string, [RegExp, (res: import('node:http').ServerResponse, url: string) => void]> = {
    'a description that never comes': [/no answer within/, () => undefined],
    'a SOAP call that never answers': [/no answer within/, () => undefined],
    'an oversized description': [/exceeds 65536/, (res) => (res.writeHead(200), res.end('<root>' + 'x'.repeat(70_000) + '</root>'))],
    'an oversized streamed description': [/exceeds 65536 bytes/, (res) => (res.writeHead(200), res.write('x'.repeat(40_000)), res.end('y'.repeat(40_000)))],
    'a truncated description (connection cut)': [/failed/, (res) => (res.writeHead(200, { 'Content-Length': '5000' }), res.write('<root><device>'), res.socket?.destroy())],
    'a description without IGD services': [/offers no WANIPConnection/, (res) => (res.writeHead(200), res.end('<root><device><serviceList></serviceList></device></root>'))],
    'a controlURL on another host': [/points to 10\.9\.9\.9/, (res) => (res.writeHead(200), res.end('<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>http://10.9.9.9/ctl</controlURL></service></root>'))],
    'a description HTTP 404': [/HTTP 404/, (res) => (res.writeHead(404), res.end())],
    'SOAP HTTP 500 without a fault': [/HTTP 500 without a SOAP fault/, (res) => (res.writeHead(500), res.end('oops'))],
    'SOAP 200 with garbage': [/malformed response/, (res) => (res.writeHead(200), res.end('<<<>>>&&&'))],
    'SOAP truncated XML': [/malformed response/, (res) => (res.writeHead(200), res.end('<s:Envelope><s:Body><u:AddAnyPortMappingResponse><NewReservedPort>80'))],
    'SOAP reserved port out of range': [/invalid NewReservedPort/, (res) => (res.writeHead(200), res.end('<u:AddAnyPortMappingResponse><NewReservedPort>70000</NewReservedPort></u:AddAnyPortMappingResponse>'))],
  };
  for (const [name, [re, respond]] of Object.entries(httpCases)) {
    it(`HTTP: ${name}`, async () => {
      const soap = name.startsWith('SOAP') || name.includes('SOAP');
      igd.httpOverride = (req, res) => {
        const isDesc = req.url === '/rootDesc.xml';
        if (soap === isDesc) return false;
        respond(res, String(req.url));
        return true;
      };
      const t0 = performance.now();
      const e = (await mapPort(opts({ methodTimeout: 1_000 })).catch((x: unknown) => x)) as PortMappingFailedError;
      expect(performance.now() - t0).toBeLessThan(2_000);
      expect(e).toBeInstanceOf(PortMappingFailedError);
      expect(e.attempts[0]?.error).toBeInstanceOf(PortMappingError);
      expect(e.attempts[0]?.error.message).toMatch(re);
    });
  }
});

describe('UPnP helpers', () => {
  it('escapes and unescapes XML', () => {
    expect(xmlEscape(`<a href="x">&'\u0001`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
    expect(xmlUnescape('&lt;&#65;&#x42;&amp;amp;&bogus;')).toBe('<AB&amp;&bogus;');
    expect(soapEnvelope('urn:x', 'Act', [['NewDesc', '</NewDesc><evil/>']])).toContain('<NewDesc>&lt;/NewDesc&gt;&lt;evil/&gt;</NewDesc>');
    expect(() => soapEnvelope('urn:x', 'Act', [['bad name', '1']])).toThrow(/bad SOAP argument/);
  });

  it('parses descriptions: prefers WANIPConnection:2, resolves URLBase, ignores comments', () => {
    const loc = new URL('http://192.168.1.1:5000/rootDesc.xml');
    const d = parseIgdDescription(
      '<root><URLBase>http://192.168.1.1:5000/</URLBase><!-- <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>http://6.6.6.6/</controlURL></service> -->' +
        '<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service>' +
        '<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>ip1</controlURL></service></root>',
      loc,
    );
    expect(d.connection).toMatchObject({ serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', version: 1 });
    expect(d.connection?.controlUrl.href).toBe('http://192.168.1.1:5000/ip1');
  });

  it('UpnpClient.discover with a LOCATION; SOAP fault codes', async () => {
    const c = await UpnpClient.discover({ location: igd.location });
    expect(c.igd.friendlyName).toBe('fake & co');
    igd.faults.set('DeletePortMapping', [714, 'NoSuchEntryInArray']);
    await expect(c.deletePortMapping('tcp', 1234)).rejects.toMatchObject({ method: 'upnp', resultCode: 714 });
  });

  it('parsers never throw anything but PortMappingError on arbitrary input, and stay fast on 64 KiB', () => {
    const loc = new URL('http://192.168.1.1:5000/d.xml');
    const from = { host: '192.168.1.1', port: 1900, family: 4 as const };
    const xmlish = fc.stringMatching(/^[<>\/a-zA-Z:="& ;#x0-9\n!\[\]-]{0,400}$/);
    fc.assert(
      fc.property(fc.oneof(xmlish, fc.string({ maxLength: 400 })), (text) => {
        for (const t of [text, `<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>${text}</controlURL></service></root>`]) {
          try {
            parseIgdDescription(t, loc);
          } catch (e) {
            expect(e).toBeInstanceOf(PortMappingError);
          }
          const f = parseSoapFault(t, 'X');
          expect(f === undefined || f instanceof PortMappingError).toBe(true);
        }
        expect(() => parseSsdpResponse(Buffer.from(`HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nLOCATION: ${text}\r\n\r\n`), from)).not.toThrow();
      }),
      { numRuns: 500 },
    );
    const t0 = performance.now();
    for (const evil of ['<service '.repeat(7000), '<s:Fault><errorCode>'.repeat(3000), '<!--'.repeat(16000), '<root>' + '<service><serviceType>x</serviceType>'.repeat(1500)]) {
      parseIgdDescription(evil.slice(0, 65536), loc);
      parseSoapFault(evil.slice(0, 65536), 'X');
    }
    expect(performance.now() - t0).toBeLessThan(1_000);
  });
});
