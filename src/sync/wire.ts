/**
 * Sync messages: `u8 type · 32-byte namespace · body`, and the split of record batches into
 * messages that fit a swarm payload.
 * @module
 */
import { MAX_PAYLOAD_SIZE } from '../swarm/constants.js';
import { MAX_RECORDS_PER_MESSAGE } from './constants.js';
import { encodeRecordList } from './record.js';

/** A sync message of `type` for the dict `namespace`. */
export function syncMessage(type: number, namespace: Buffer, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), namespace, body]);
}

/** Splits records into batches that each fit one message (size and {@link MAX_RECORDS_PER_MESSAGE}). */
export function* recordChunks(raws: Iterable<Buffer>): IterableIterator<Buffer[]> {
  let cur: Buffer[] = [];
  let size = 64;
  for (const r of raws) {
    if (cur.length > 0 && (size + r.length + 4 > MAX_PAYLOAD_SIZE || cur.length >= MAX_RECORDS_PER_MESSAGE)) {
      yield cur;
      cur = [];
      size = 64;
    }
    cur.push(r);
    size += r.length + 4;
  }
  if (cur.length > 0) yield cur;
}

/** The messages of `type` carrying `raws` (one per batch). */
export function recordMessages(type: number, namespace: Buffer, raws: Iterable<Buffer>): Buffer[] {
  const out: Buffer[] = [];
  for (const chunk of recordChunks(raws)) out.push(syncMessage(type, namespace, encodeRecordList(chunk)));
  return out;
}
