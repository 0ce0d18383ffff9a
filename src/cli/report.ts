/**
 * What the `p2pd` command prints (see `main.ts`): the interface table, a STUN mapping and a
 * NAT detection, as text or as one JSON document.
 * @module
 */
import { formatEndpoint, type Endpoint } from '../interfaces/endpoint.js';
import type { Interface } from '../interfaces/interfaces.js';
import type { NatDetection } from '../nat/detect/nat-type.js';
import type { StunMapping } from '../nat/stun/client.js';
import type { Args } from './args.js';
import type { CliIo } from './io.js';
import type { PortMappingProbeResult } from './portmap-probe.js';

const ep = (e: Endpoint | undefined): string => (e ? formatEndpoint(e) : '-');
const row = (k: string, v: string): string => `${k.padEnd(14)} ${v}\n`;

/** The interface table (`p2pd interfaces`). */
export function interfacesText(list: readonly Interface[]): string {
  const head = ['NAME', 'INDEX', 'STATE', 'DEFAULT', 'MAC'];
  const rows = list.map((i) => [
    i.name,
    String(i.index),
    i.up ? 'up' : 'down',
    [i.isDefault[4] ? 'v4' : '', i.isDefault[6] ? 'v6' : ''].filter(Boolean).join(',') || '-',
    i.mac,
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] as string).length)));
  const line = (cells: string[]): string => cells.map((x, c) => x.padEnd(widths[c] as number)).join('  ').trimEnd() + '\n';
  let out = line(head);
  list.forEach((i, n) => {
    out += line(rows[n] as string[]);
    for (const a of i.addresses) {
      const zone = a.scopeId !== undefined ? `%${a.scopeId}` : '';
      out += `    ${`${a.address}${zone}/${a.prefixLength}`.padEnd(44)} ${a.scope}\n`;
    }
    for (const f of [4, 6] as const) {
      const g = i.gateways[f];
      if (g) out += `    gateway v${f} ${g}\n`;
    }
  });
  return out;
}

/** Prints a STUN mapping (`p2pd stun`). */
export function printMapping(m: StunMapping, a: Args, io: CliIo): void {
  if (a.json) {
    io.stdout.write(JSON.stringify(m, null, 2) + '\n');
    return;
  }
  io.stdout.write(
    row('Local', ep(m.local)) + row('Mapped', ep(m.mapped)) + row('Server', `${ep(m.server)} (${m.proto}${m.classic ? ', RFC 3489' : ''})`) +
      (m.otherAddress ? row('Other address', `${ep(m.otherAddress)} (${m.otherKind === 'rfc5780' ? 'RFC 5780' : 'RFC 3489'})`) : '') +
      (m.software ? row('Software', m.software) : '') + row('RTT', `${m.rtt.toFixed(2)} ms`),
  );
}

/** Prints a NAT detection and the port-mapping probe (`p2pd nat`). */
export function printNat(r: NatDetection, pm: PortMappingProbeResult[] | undefined, ms: number, a: Args, io: CliIo): void {
  if (a.json) {
    io.stdout.write(JSON.stringify({ ...r, portMapping: pm, totalMs: ms }, null, 2) + '\n');
    return;
  }
  const method = r.method === 'rfc5780' ? 'RFC 5780' : r.method === 'rfc3489' ? 'RFC 3489' : r.method === 'basic' ? 'no CHANGE-REQUEST support' : 'no answer';
  let out = row('NAT type', r.type);
  out += row('Mapping', r.mapping) + row('Filtering', r.filtering);
  out += row('External', ep(r.external)) + row('Local', ep(r.local));
  out += row('Port delta', r.delta ? `${r.delta.type}${r.delta.type === 'INDEPENDENT' || r.delta.type === 'DEPENDENT' ? ` (${r.delta.value >= 0 ? '+' : ''}${r.delta.value})` : ''}` : r.deltaError ? `unknown (${r.deltaError})` : 'not tested');
  if (r.hairpin !== undefined) out += row('Hairpin', r.hairpin ? 'yes' : 'no');
  out += row('STUN server', `${ep(r.server)} (${method}${r.otherAddress ? `, other ${ep(r.otherAddress)}` : ''})`);
  if (pm) {
    const text = pm.length === 0 ? 'not available' : pm.map((p) => `${p.method}: ${p.available ? `yes${p.externalAddress ? ` (${p.externalAddress})` : ''}` : `no${p.detail ? ` (${p.detail})` : ''}`}`).join(', ');
    out += row('Port mapping', text);
  }
  out += row('Time', `${ms.toFixed(0)} ms (NAT tests ${r.ms.toFixed(0)} ms)`);
  io.stdout.write(out);
}
