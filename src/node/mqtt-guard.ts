/**
 * A bound on the MQTT packets read from a connection, on both sides of p2pd signalling (the
 * embedded broker's clients, our client's brokers): MQTT lets a packet announce up to 256 MiB,
 * and both aedes and the mqtt.js client buffer a whole packet before looking at it. A
 * connection announcing more than any p2pd message needs is dropped at the packet's header.
 * @module
 */
import type { Duplex } from 'node:stream';
import { MAX_ENVELOPE } from './envelope.js';

/**
 * Largest MQTT packet read (its remaining length, bytes): a PUBLISH of the largest envelope
 * with its topic, or any other packet of p2pd signalling.
 */
export const MAX_MQTT_PACKET = MAX_ENVELOPE + 1024;

/**
 * Watches the bytes read from `stream` (through its 'data' events, which every consumer's
 * read also emits) and destroys it at the header of a packet larger than `max`.
 */
export function guardMqttStream(stream: Duplex, max = MAX_MQTT_PACKET): void {
  const guard = new PacketSizeGuard(max);
  stream.on('data', (chunk: Buffer | string) => {
    if (!guard.feed(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) stream.destroy();
  });
}

/**
 * Follows the MQTT framing of a byte stream (fixed header byte, remaining length as a
 * variable-length integer, body) without buffering it, and tells when a packet announces more
 * than `max` bytes (or a malformed length).
 */
export class PacketSizeGuard {
  /** Body bytes of the current packet still to come. */
  private skip = 0;
  /** -1: the next byte is a packet's first; else length bytes read so far. */
  private lenBytes = -1;
  private len = 0;
  private mul = 1;

  constructor(private readonly max: number) {}

  /** Takes the next bytes of the stream; false once a packet is too large (stop reading then). */
  feed(b: Buffer): boolean {
    let i = 0;
    while (i < b.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, b.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const x = b[i++] as number;
      if (this.lenBytes < 0) {
        this.lenBytes = this.len = 0;
        this.mul = 1;
        continue;
      }
      this.len += (x & 0x7f) * this.mul;
      this.mul *= 128;
      this.lenBytes++;
      if (this.len > this.max) return false;
      if (x & 0x80) {
        if (this.lenBytes >= 4) return false;
        continue;
      }
      this.skip = this.len;
      this.lenBytes = -1;
    }
    return true;
  }
}
