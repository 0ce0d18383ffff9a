/**
 * Servers named on the `p2pd` command line (`--stun HOST[:PORT]`, the host of `--turn
 * USER:PASS@HOST[:PORT]`): an IP literal as the library takes it, or a host name. The syntax is
 * checked while the command line is read (a malformed value is bad usage, exit 2); names are
 * resolved explicitly before the command starts (the library itself never resolves names), and
 * a name that does not resolve is a failure (exit 1, {@link HostNotFoundError}). Shared by the
 * node commands (`src/node/cli.ts`) and `p2pd nat` / `p2pd stun` (`src/cli/main.ts`).
 * @module
 */
import { lookup } from 'node:dns/promises';
import { NotFoundError, type P2pdErrorOptions } from '../errors.js';
import { toEndpoint, type Endpoint, type Family } from '../interfaces/endpoint.js';

/** A server as given on the command line: an IP literal (kept as typed), or a host name and port. */
export type ServerSpec = { readonly literal: string } | { readonly name: string; readonly port: number };

/** A host name that did not resolve (`--stun nosuch.example`). Code `ERR_NOT_FOUND`. */
export class HostNotFoundError extends NotFoundError {
  /** The name that was looked up. */
  readonly host: string;
  constructor(host: string, message: string, options?: P2pdErrorOptions) {
    super(message, options);
    this.host = host;
  }
}

/** Longest host name (RFC 1035). */
const MAX_NAME = 253;
const LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Whether `host` is a syntactically valid host name: dot-separated labels of letters, digits and
 * inner hyphens (so nothing that starts with `-`: `--stun --json` is a missing value, not a
 * name), a trailing dot allowed, and a last label that is not all digits (`1.2.3` and `127.1`
 * are malformed addresses, which the system resolver would read as IPv4 shorthand).
 */
export function isHostName(host: string): boolean {
  const h = host.endsWith('.') ? host.slice(0, -1) : host;
  if (h.length === 0 || h.length > MAX_NAME) return false;
  const labels = h.split('.');
  return labels.every((l) => LABEL_RE.test(l)) && !/^[0-9]+$/.test(labels.at(-1) as string);
}

/**
 * Reads a server spec `HOST[:PORT]`: what `literal` accepts (the library's own parser of that
 * option, which throws on anything else) is an IP literal and kept as typed; otherwise it must be
 * a host name ({@link isHostName}) with an optional port 1-65535 (default `defaultPort`).
 * Returns `undefined` for anything else: the caller reports it as bad usage, naming its option.
 */
export function serverSpec(spec: string, literal: (s: string) => unknown, defaultPort: number): ServerSpec | undefined {
  try {
    literal(spec);
    return { literal: spec };
  } catch {
    /* not an IP literal the library takes: a name, or malformed */
  }
  const m = /^([^:]*):([0-9]{1,5})$/.exec(spec);
  const host = m ? (m[1] as string) : spec;
  const port = m ? Number(m[2]) : defaultPort;
  if (!isHostName(host) || !(port >= 1 && port <= 65535)) return undefined;
  return { name: host, port };
}

const NOT_FOUND = new Set(['ENOTFOUND', 'EAI_NONAME', 'ENODATA', 'EAI_NODATA']);

/**
 * The server a spec names, for the library: a literal as typed, a name looked up (`family`
 * restricts the answer) as an endpoint.
 * @param what Names the option in the error (`--stun`).
 * @throws HostNotFoundError when the name does not resolve: `--stun "NAME": host not found (ENOTFOUND)`.
 */
export async function resolveSpec(s: ServerSpec, what: string, family?: Family): Promise<string | Endpoint> {
  if ('literal' in s) return s.literal;
  let address: string;
  try {
    address = (await lookup(s.name, family ? { family } : {})).address;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const only = family ? `, IPv${family} only` : '';
    const why = typeof code === 'string' && NOT_FOUND.has(code) ? `host not found (${code}${only})`
      : code === 'EAI_AGAIN' ? `name resolution failed, try again (EAI_AGAIN${only})` : `name resolution failed: ${(e as Error)?.message ?? String(e)}`;
    throw new HostNotFoundError(s.name, `${what} ${JSON.stringify(s.name)}: ${why}`, { cause: e });
  }
  return toEndpoint({ host: address, port: s.port });
}
