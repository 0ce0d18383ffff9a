#!/usr/bin/env node
// UDP hole-punching probe used to check the lab's NAT behaviour (not a
// framework): learn our server-reflexive address by STUN, swap it with the
// peer through a shared directory (out-of-band signalling), then both sides
// send to each other's reflexive address and answer whatever arrives.
//   node udp-punch.cjs NAME PEER DIR STUN_HOST [SECONDS]
// Prints one JSON line; exit 0 when a punch/ack round trip succeeded.
'use strict';
const dgram = require('node:dgram');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const [me, peer, dir, stunHost, secS = '4'] = process.argv.slice(2);
if (!stunHost) { console.error('usage: udp-punch.cjs NAME PEER DIR STUN_HOST [SECONDS]'); process.exit(2); }
const sock = dgram.createSocket('udp4');
const t0 = Date.now();
const result = { me, peer, ok: false };
const learned = new Set();

function stun() {
  return new Promise((resolve, reject) => {
    const tid = crypto.randomBytes(12);
    const req = Buffer.alloc(20);
    req.writeUInt16BE(1, 0); req.writeUInt32BE(0x2112a442, 4); tid.copy(req, 8);
    const onMsg = (m) => {
      if (m.length < 20 || m.readUInt16BE(0) !== 0x0101 || !m.subarray(8, 20).equals(tid)) return;
      for (let o = 20; o + 4 <= m.length;) {
        const type = m.readUInt16BE(o); const len = m.readUInt16BE(o + 2);
        if (type === 0x0020) {
          sock.off('message', onMsg); clearInterval(iv);
          const p = m.readUInt16BE(o + 6) ^ 0x2112;
          const a = [0, 1, 2, 3].map((i) => m[o + 8 + i] ^ [0x21, 0x12, 0xa4, 0x42][i]).join('.');
          return resolve({ address: a, port: p });
        }
        o += 4 + len + ((4 - (len % 4)) % 4);
      }
    };
    sock.on('message', onMsg);
    const iv = setInterval(() => sock.send(req, 3478, stunHost), 300);
    sock.send(req, 3478, stunHost);
    setTimeout(() => reject(new Error('stun timeout')), 3000);
  });
}

async function main() {
  await new Promise((r) => sock.bind(0, r));
  result.local = sock.address().port;
  result.mapped = await stun();
  fs.writeFileSync(path.join(dir, `${me}.json.tmp`), JSON.stringify(result.mapped));
  fs.renameSync(path.join(dir, `${me}.json.tmp`), path.join(dir, `${me}.json`));
  let pm;
  for (let i = 0; i < 100 && !pm; i++) {
    try { pm = JSON.parse(fs.readFileSync(path.join(dir, `${peer}.json`), 'utf8')); } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  if (!pm) throw new Error('peer never published its address');
  result.peerMapped = pm;
  sock.on('message', (m, r) => {
    const s = m.toString();
    const from = `${r.address}:${r.port}`;
    if (s.startsWith(`punch ${peer}`)) { learned.add(from); result.gotPunchFrom = from; sock.send(`ack ${me}`, r.port, r.address); }
    if (s.startsWith(`ack ${peer}`) && !result.ok) { result.ok = true; result.ackFrom = from; result.ms = Date.now() - t0; }
  });
  const end = Date.now() + Number(secS) * 1000;
  while (Date.now() < end) {
    sock.send(`punch ${me}`, pm.port, pm.address);
    for (const a of learned) { const [h, p] = a.split(':'); sock.send(`punch ${me}`, Number(p), h); }
    // keep going a little after success so that the peer gets our acks too
    if (result.ok && Date.now() - t0 > result.ms + 500) break;
    await new Promise((r) => setTimeout(r, 100));
  }
}
main().catch((e) => { result.error = e.message; }).finally(() => {
  console.log(JSON.stringify(result));
  sock.close();
  process.exitCode = result.ok ? 0 : 1;
});
