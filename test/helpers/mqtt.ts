/**
 * Raw MQTT 3.1.1 packets for tests that play a hostile client byte by byte (the broker and
 * signalling audits): the variable-length integer and a CONNECT.
 * @module
 */

/** MQTT's variable-length integer (remaining length). */
export function mqttVarint(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

/** A CONNECT packet: MQTT 3.1.1, clean session, keep-alive 30 s, client id `clientId`. */
export function mqttConnect(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const vh = Buffer.concat([Buffer.from([0, 4]), Buffer.from('MQTT'), Buffer.from([4, 2, 0, 30, 0, id.length]), id]);
  return Buffer.concat([Buffer.from([0x10]), mqttVarint(vh.length), vh]);
}
