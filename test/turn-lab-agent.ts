/**
 * TURN agent for the lab suite (test/turn-lab.test.ts), run inside a namespace with
 * `node --import tsx test/turn-lab-agent.ts key=value...`:
 *
 *   server=HOST:PORT user=U pass=P [proto=udp|tcp] [lifetime=S] [permit=IP,IP]
 *   [initiate=HOST:PORT,...] [count=N] [stats=MS]
 *
 * Allocates, permits the given peer IPs, sends `hello-<i>` (count times) to each `initiate`
 * target, and echoes every message that does not start with `echo:` back to its sender
 * (prefixed `echo:`). Prints JSON lines: `allocated`, `permitted`, `recv`, `stats` (every
 * `stats` ms), `error` (then exit 2) and `closed` (after SIGTERM: the allocation is deleted).
 */
import { formatEndpoint } from '../src/interfaces/endpoint.js';
import { turnAllocate } from '../src/nat/turn/index.js';

const args = Object.fromEntries(process.argv.slice(2).map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]));
const out = (o: Record<string, unknown>): void => console.log(JSON.stringify(o));
const list = (s: string | undefined): string[] => (s ? s.split(',').filter(Boolean) : []);

try {
  const relay = await turnAllocate({
    server: args.server as string,
    username: args.user as string,
    password: args.pass as string,
    proto: (args.proto ?? 'udp') as 'udp' | 'tcp',
    ...(args.lifetime ? { lifetime: Number(args.lifetime) } : {}),
    onMessage: (m) => {
      const data = m.data.toString();
      out({ event: 'recv', from: formatEndpoint(m.from), data });
      if (!data.startsWith('echo:')) void relay.send(`echo:${data}`, m.from).catch((e: Error) => out({ event: 'send-error', message: e.message }));
    },
  });
  relay.onError((e) => out({ event: 'background-error', message: e.message }));
  relay.onClose((e) => out({ event: 'pipe-closed', error: e?.message }));
  out({ event: 'allocated', relayed: formatEndpoint(relay.relayed), mapped: relay.mapped ? formatEndpoint(relay.mapped) : null, lifetime: relay.lifetime, proto: relay.serverProto });
  const permit = list(args.permit);
  if (permit.length) {
    await relay.permit(permit);
    out({ event: 'permitted', hosts: relay.permissions });
  }
  const count = Number(args.count ?? 3);
  for (const target of list(args.initiate)) {
    for (let i = 0; i < count; i++) {
      await relay.send(`hello-${i}`, target);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const stats = Number(args.stats ?? 0);
  const timer = stats > 0
    ? setInterval(() => out({ event: 'stats', refreshes: relay.turnStats.refreshes, lifetime: relay.lifetime, closed: relay.closed, expiresIn: relay.expiresAt - Date.now(), staleNonces: relay.session.auth.staleNonces, channels: relay.channels }), stats)
    : undefined;
  const stop = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    await relay.close();
    out({ event: 'closed', stats: relay.turnStats });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
} catch (e) {
  const err = e as Error & { code?: string; errorCode?: number };
  out({ event: 'error', name: err.name, code: err.code, errorCode: err.errorCode, message: err.message });
  process.exit(2);
}
