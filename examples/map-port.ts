/**
 * The classic port-mapping example: map local port 7777 to external port 8888 on the
 * gateway (UPnP, then NAT-PMP, then PCP), trying the next external port up to 5 times when
 * the one asked for is taken, then delete the mapping.
 *
 * Run: npx tsx examples/map-port.ts [--gateway 192.168.1.1] [--protocol udp|tcp]
 *        [--methods upnp,nat-pmp,pcp] [--hold SECONDS]
 */
import { PortMappingError, PortMappingFailedError, mapPort, type GatewayOptions, type PortMapping, type PortMappingMethod } from '../src/index.js';
import { isMain } from './run-main.js';

/** Options of {@link main}; every one has the classic default. */
export interface MapPortExampleOptions {
  /** @default 7777 */
  internalPort?: number;
  /** First external port to ask for. @default 8888 */
  externalPort?: number;
  /** External ports to try (8888, 8889, …). @default 5 */
  tries?: number;
  /** @default 'udp' */
  protocol?: 'udp' | 'tcp';
  /** @default the default gateway */
  gateway?: string | GatewayOptions;
  /** @default ['upnp', 'nat-pmp', 'pcp'] */
  methods?: PortMappingMethod[];
  /** Per method, ms. @default 6000 */
  methodTimeout?: number;
  /** Requested lifetime, seconds. @default 3600 */
  lifetime?: number;
  /** How long to keep the mapping before deleting it, ms; or a function awaited meanwhile. @default 0 */
  hold?: number | ((m: PortMapping) => Promise<void>);
  /** @default console.log */
  log?: (line: string) => void;
}

/** What the example did. */
export interface MapPortExampleResult {
  /** External ports asked for, in order. */
  tried: number[];
  method: PortMappingMethod;
  externalAddress: string | undefined;
  externalPort: number;
  /** The mapping was deleted. */
  deleted: boolean;
}

export async function main(opts: MapPortExampleOptions = {}): Promise<MapPortExampleResult> {
  const log = opts.log ?? console.log;
  const internalPort = opts.internalPort ?? 7777;
  const first = opts.externalPort ?? 8888;
  const protocol = opts.protocol ?? 'udp';
  const tried: number[] = [];
  let mapping: PortMapping | undefined;
  for (let i = 0; i < (opts.tries ?? 5) && !mapping; i++) {
    const externalPort = first + i;
    tried.push(externalPort);
    try {
      mapping = await mapPort({
        internalPort,
        externalPort,
        exactPort: true, // "8888 or the next one up", never whatever the gateway picks
        protocol,
        lifetime: opts.lifetime ?? 3600,
        ...(opts.gateway !== undefined ? { gateway: opts.gateway } : {}),
        ...(opts.methods ? { methods: opts.methods } : {}),
        ...(opts.methodTimeout ? { methodTimeout: opts.methodTimeout } : {}),
        onRenew: (m) => log(`renewed: ${m.externalAddress ?? '?'}:${m.externalPort} until ${m.expiresAt?.toISOString() ?? 'forever'}`),
        onRenewFailed: (e) => log(`renewal failed: ${e.message}`),
      });
    } catch (e) {
      if (e instanceof PortMappingFailedError && e.portUnavailable) {
        log(`external port ${externalPort} is taken; trying ${externalPort + 1}`);
        continue;
      }
      throw e; // no gateway answered, or it refused for another reason: another port will not help
    }
  }
  if (!mapping) throw new PortMappingError('upnp', `no free external port in ${tried.join(', ')}`);
  log(`mapped ${protocol} ${mapping.internalAddress}:${internalPort} -> ${mapping.externalAddress ?? '(unknown address)'}:${mapping.externalPort} via ${mapping.method}, lifetime ${mapping.lifetime} s`);
  const result: MapPortExampleResult = {
    tried,
    method: mapping.method,
    externalAddress: mapping.externalAddress,
    externalPort: mapping.externalPort,
    deleted: false,
  };
  try {
    if (typeof opts.hold === 'function') await opts.hold(mapping);
    else if (opts.hold) await new Promise((r) => setTimeout(r, opts.hold as number));
  } finally {
    await mapping.close();
    result.deleted = true;
    log(`deleted the mapping of external port ${mapping.externalPort}`);
  }
  return result;
}

if (isMain(import.meta.url)) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const methods = arg('methods')?.split(',') as PortMappingMethod[] | undefined;
  const hold = arg('hold');
  main({
    ...(arg('gateway') ? { gateway: arg('gateway') as string } : {}),
    ...(arg('protocol') ? { protocol: arg('protocol') as 'udp' | 'tcp' } : {}),
    ...(methods ? { methods } : {}),
    ...(hold ? { hold: Number(hold) * 1000 } : {}),
  }).then(
    (r) => console.log(JSON.stringify(r)),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = 1;
    },
  );
}
