/**
 * Micro-benchmark of the Noise core (no sockets): ChaCha20-Poly1305 framing throughput for
 * 64 KiB messages and XX handshakes per second. Single thread, both ends in this process.
 *
 *   npx tsx bench/noise-micro.ts            (BENCH_SECONDS=n per measurement, default 2)
 *
 * Each line reports the best 200 ms window both per wall-clock second and per CPU second.
 *
 * Not a test; prints a small table.
 * @module
 */
import { createCipheriv } from 'node:crypto';
import {
  CipherState,
  clearVerifiedPayloadCache,
  decryptFrame,
  encryptFrame,
  Identity,
  messageChunkSizes,
  NOISE_MAX_PLAINTEXT,
  SecureChannel,
  SecureHandshake,
} from '../src/crypto/index.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 2);
const MSG = 64 * 1024;
const READ = 64 * 1024; // typical socket read size

/**
 * Runs `op` in short windows and reports the best window, both per wall-clock second and per
 * CPU second of this process (the latter is what matters on a busy machine: it is what a
 * benchmark process with a core of its own would see).
 */
function measure(name: string, unit: string, perOp: number, op: () => void): number {
  for (let i = 0; i < 50; i++) op(); // warm-up
  const windows = Math.max(3, Math.round(SECONDS / 0.2));
  let bestWall = 0;
  let bestCpu = 0;
  for (let w = 0; w < windows; w++) {
    let n = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const deadline = t0 + 200_000_000n;
    let t = t0;
    while (t < deadline) {
      for (let i = 0; i < 10; i++) op();
      n += 10;
      t = process.hrtime.bigint();
    }
    const c = process.cpuUsage(c0);
    bestWall = Math.max(bestWall, (n * perOp) / (Number(t - t0) / 1e9));
    bestCpu = Math.max(bestCpu, (n * perOp) / ((c.user + c.system) / 1e6));
  }
  console.log(`${name.padEnd(58)} ${bestWall.toFixed(0).padStart(7)} ${unit} wall  ${bestCpu.toFixed(0).padStart(7)} ${unit} cpu`);
  return bestCpu;
}

const key = Buffer.alloc(32, 1);
const msg = Buffer.alloc(MSG, 0x61);

console.log(`node ${process.version}, ${SECONDS}s per line, message ${MSG} B (Noise frames of ${messageChunkSizes(MSG).join(' + ')} B)`);

// 1. One Noise frame (65519 B plaintext): encrypt, decrypt.
{
  const pt = Buffer.alloc(NOISE_MAX_PLAINTEXT, 0x62);
  const iv = Buffer.alloc(12);
  measure('reference: bare node:crypto chacha20-poly1305 (65519 B)', 'MB/s', NOISE_MAX_PLAINTEXT / 1e6, () => {
    const c = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 });
    c.update(pt);
    c.final();
    c.getAuthTag();
  });
  const frames = messageChunkSizes(MSG).map((n) => Buffer.alloc(n, 0x62));
  measure(`reference: bare chacha20-poly1305, the frames of a ${MSG} B message`, 'MB/s', MSG / 1e6, () => {
    for (const f of frames) {
      const c = createCipheriv('chacha20-poly1305', key, iv, { authTagLength: 16 });
      c.update(f);
      c.final();
      c.getAuthTag();
    }
  });
  const tx = new CipherState(key);
  measure('frame encrypt (65519 B)', 'MB/s', NOISE_MAX_PLAINTEXT / 1e6, () => void encryptFrame(tx, pt));
  const tx2 = new CipherState(key);
  const rx2 = new CipherState(key);
  measure('frame encrypt+decrypt (65519 B)', 'MB/s', NOISE_MAX_PLAINTEXT / 1e6, () => void decryptFrame(rx2, encryptFrame(tx2, pt)));
}

// 2. Whole 64 KiB messages through SecureChannel, wire bytes re-cut into 64 KiB reads.
{
  const ch = (): SecureChannel => new SecureChannel({ send: new CipherState(key), recv: new CipherState(key) });
  const a = ch();
  measure('SecureChannel.encrypt 64 KiB message', 'MB/s', MSG / 1e6, () => void a.encrypt(msg));
  measure('SecureChannel.encryptv 64 KiB message (no copy)', 'MB/s', MSG / 1e6, () => void a.encryptv(msg));

  const tx = ch();
  const rx = ch();
  // Pre-encrypt a long stream (also used for decrypt-only).
  const N = 512;
  const wire = Buffer.concat(Array.from({ length: N }, () => tx.encrypt(msg)));
  const reads: Buffer[] = [];
  for (let off = 0; off < wire.length; off += READ) reads.push(wire.subarray(off, off + READ));
  let i = 0;
  let got = 0;
  let rxCur = rx;
  measure('SecureChannel.decrypt (64 KiB reads), per 64 KiB message', 'MB/s', MSG / 1e6, () => {
    // Refill: restart on a fresh channel pair when the stream is consumed.
    while (got < 1) {
      if (i === reads.length) {
        i = 0;
        rxCur = ch();
      }
      got += rxCur.decrypt(reads[i++] as Buffer).length;
    }
    got--;
  });

  const tx3 = ch();
  const rx3 = ch();
  measure('encrypt + decrypt 64 KiB message (one thread)', 'MB/s', MSG / 1e6, () => {
    const w = tx3.encrypt(msg);
    // Deliver in 64 KiB reads (the last read of each message is short).
    for (let off = 0; off < w.length; off += READ) rx3.decrypt(w.subarray(off, off + READ));
  });
}

// 3. Handshakes (both sides in this thread).
{
  const ia = Identity.generate();
  const ib = Identity.generate();
  const hs = (): void => {
    const a = new SecureHandshake({ identity: ia, initiator: true, remoteId: ib.id });
    const b = new SecureHandshake({ identity: ib, initiator: false });
    b.readMessage(a.writeMessage());
    a.readMessage(b.writeMessage());
    b.readMessage(a.writeMessage());
    a.result();
    b.result();
  };
  measure('XX handshake, both sides (signature cache warm)', 'hs/s', 1, hs);
  measure('XX handshake, both sides (cold: 2 Ed25519 verifies)', 'hs/s', 1, () => {
    clearVerifiedPayloadCache();
    hs();
  });
}
