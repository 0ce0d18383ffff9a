/**
 * `p2pd serve` (see `src/node/cli.ts`): an MQTT broker (the embedded one, `startBroker`) and a
 * STUN server for your own infrastructure. It prints where they listen (a `serving` line),
 * with `-v` the connections the broker refused as they happen (a `mqtt-refused` line at most
 * once a second: over the per-host cap, `--mqtt-max-per-host`, or with the broker full), and
 * when it stops (Ctrl-C, SIGTERM) a `summary` line with the broker's connection counters.
 * @module
 */
import { formatEndpoint } from '../interfaces/endpoint.js';
import { describeStunServer, startStunServer, type StunServer } from '../nat/stun/server.js';
import { MAX_BROKER_CONNECTIONS_PER_HOST, startBroker, type Broker, type BrokerStats } from './broker.js';
import { untilAborted, type Out } from './cli-out.js';
import type { NodeArgs } from './cli-parse.js';

/** How often `serve -v` looks for refused connections (ms); one line at most per period. */
export const SERVE_REFUSED_CHECK_MS = 1000;

/** Names the server that failed to start in its error (`serve` starts two). */
const said = (what: string) => (e: unknown): never => {
  if (e instanceof Error) e.message = `${what}: ${e.message}`;
  throw e;
};

const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;

/** The broker's counters as text: `3 connections accepted, 1 refused over the per-host cap (1), 0 refused (broker full)`. */
function statsText(s: Readonly<BrokerStats>, perHost: number): string {
  return `${plural(s.accepted, 'connection')} accepted, ${s.refusedPerHost} refused over the per-host cap (${perHost}), ${s.refusedFull} refused (broker full)`;
}

/**
 * With `-v`: reports the connections `broker` refused since the last look, every
 * {@link SERVE_REFUSED_CHECK_MS} while any were. Returns the stop function.
 */
function watchRefused(broker: Broker, perHost: number, out: Out): () => void {
  let seen = { refusedPerHost: 0, refusedFull: 0 };
  const t = setInterval(() => {
    const s = { ...broker.stats };
    const perHostNew = s.refusedPerHost - seen.refusedPerHost;
    const fullNew = s.refusedFull - seen.refusedFull;
    if (perHostNew === 0 && fullNew === 0) return;
    seen = s;
    out.verbose(
      { event: 'mqtt-refused', perHost: perHostNew, full: fullNew, maxPerHost: perHost, clients: broker.clients, stats: s },
      `MQTT broker refused ${plural(perHostNew + fullNew, 'connection')} (${perHostNew} over the per-host cap of ${perHost}, ${fullNew} broker full); ${broker.clients} connected; so far ${statsText(s, perHost)}`,
    );
  }, SERVE_REFUSED_CHECK_MS);
  t.unref();
  return () => clearInterval(t);
}

/** Runs `p2pd serve` until `signal` aborts; resolves with the exit code (0). Throws when a server cannot start. */
export async function cmdServe(a: NodeArgs, signal: AbortSignal | undefined, out: Out): Promise<number> {
  let broker: Broker | undefined;
  let stun: StunServer | undefined;
  let unwatch: (() => void) | undefined;
  const perHost = a.mqttMaxPerHost ?? MAX_BROKER_CONNECTIONS_PER_HOST;
  try {
    broker = await startBroker({ host: a.host, port: a.mqttPort, maxConnectionsPerHost: perHost }).catch(said('MQTT broker (--mqtt-port)'));
    const addresses = a.stunAlt ? [a.host, a.stunAlt] : [a.host];
    const ports = a.stunAlt ? [a.stunPort, a.stunPort === 0 ? 0 : a.stunPort + 1] : [a.stunPort];
    stun = await startStunServer({ addresses, ports, protos: ['udp', 'tcp'] }).catch(said('STUN server (--stun-port)'));
    const mqtt = `mqtt://${formatEndpoint({ host: broker.host, port: broker.port })}`;
    out.line({ event: 'serving', mqtt, mqttMaxPerHost: perHost, stun: describeStunServer(stun) },
      `MQTT broker: ${mqtt} (at most ${perHost} connections per source host)\nSTUN server: ${describeStunServer(stun)}`);
    unwatch = watchRefused(broker, perHost, out);
    await untilAborted(signal);
    unwatch();
    const s = { ...broker.stats };
    out.line({ event: 'summary', mqtt: { ...s, maxPerHost: perHost } }, `MQTT broker: ${statsText(s, perHost)}`);
    return 0;
  } finally {
    unwatch?.();
    await stun?.close();
    await broker?.close();
  }
}
