/**
 * STUN and NAT detection in a few lines. Without arguments it starts p2pd's own RFC 5780
 * STUN server on two loopback addresses (127.0.0.1 and 127.0.0.2) and uses it; give a server
 * (`npx tsx examples/stun.ts 203.0.113.10:3478`) to ask a real one.
 *
 * 1. `stunGetMapping`: one Binding, socket closed afterwards.
 * 2. `StunClient`: keeps its socket, runs an RFC 5780 CHANGE-REQUEST test on it.
 * 3. `detectNat`: P2PD's NAT type, RFC 4787 mapping/filtering, port allocation delta.
 *
 * Run: npx tsx examples/stun.ts [HOST[:PORT]]
 */
import { formatEndpoint, type Endpoint, StunClient, detectNat, startStunServer, stunGetMapping, type NatDetection, type StunMapping } from '../src/index.js';
import { runMain } from './run-main.js';

/** What the example did, for the test that runs it. */
export interface StunExampleResult {
  server: Endpoint;
  mapping: StunMapping;
  changed: StunMapping | undefined;
  nat: NatDetection;
}

export async function main(server?: string, log: (line: string) => void = console.log): Promise<StunExampleResult> {
  // Our own server when none is given: two addresses make it RFC 5780 capable.
  await using own = server === undefined ? await startStunServer({ addresses: ['127.0.0.1', '127.0.0.2'], ports: [0, 0], protos: ['udp', 'tcp'] }) : undefined;
  const target: string | Endpoint = own ? own.primary : (server as string);
  if (own) log(`STUN server listening on ${own.endpoints.map((e) => `${e.proto} ${formatEndpoint(e.local)}`).join(', ')}`);

  // 1. One binding.
  const mapping = await stunGetMapping({ server: target, timeout: 3000 });
  log(`mapping: local ${formatEndpoint(mapping.local)} -> mapped ${formatEndpoint(mapping.mapped)} (rtt ${mapping.rtt.toFixed(2)} ms)`);

  // 2. A client that keeps its socket (its mapping stays usable for punching via client.pipe).
  let changed: StunMapping | undefined;
  {
    await using client = await StunClient.open({ server: target, timeout: 3000 });
    const first = await client.binding();
    log(`client socket ${formatEndpoint(client.pipe.local)}: mapped ${formatEndpoint(first.mapped)}, server's other address ${first.otherAddress ? formatEndpoint(first.otherAddress) : 'none'}`);
    if (first.otherAddress) {
      changed = await client.changeRequest({ changeIp: true, changePort: true }, { timeout: 1000 }).catch(() => undefined);
      log(changed ? `CHANGE-REQUEST answered from ${formatEndpoint(changed.from)}` : 'CHANGE-REQUEST: no answer (filtered)');
    }
  }

  // 3. NAT type.
  const nat = await detectNat({ servers: [target], hairpin: true, timeout: 10_000 });
  log(`NAT: ${nat.type} (mapping ${nat.mapping}, filtering ${nat.filtering}), external ${nat.external ? formatEndpoint(nat.external) : '-'}, ` +
    `delta ${nat.delta?.type ?? '-'}, hairpin ${nat.hairpin ? 'yes' : 'no'}, ${nat.method}, ${nat.ms.toFixed(0)} ms`);
  return { server: mapping.server, mapping, changed, nat };
}

runMain(import.meta.url, () => main(process.argv[2]));
