#!/usr/bin/env node
// Minimal STUN Binding client (RFC 8489) on node:dgram, no dependencies.
//   node stun-binding.cjs HOST [PORT] [--change-ip] [--change-port] [--local-port N]
// Prints one JSON line: local port, XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS.
'use strict';
const dgram = require('node:dgram');
const crypto = require('node:crypto');

const args = process.argv.slice(2);
const host = args.find((a) => !a.startsWith('--'));
if (!host) { console.error('usage: stun-binding.cjs HOST [PORT] [--change-ip] [--change-port] [--local-port N]'); process.exit(2); }
const port = Number(args.filter((a) => !a.startsWith('--'))[1] || 3478);
const lpIdx = args.indexOf('--local-port');
const localPort = lpIdx >= 0 ? Number(args[lpIdx + 1]) : 0;
const change = (args.includes('--change-ip') ? 4 : 0) | (args.includes('--change-port') ? 2 : 0);

const tid = crypto.randomBytes(12);
const attrs = change ? Buffer.from([0x00, 0x03, 0x00, 0x04, 0, 0, 0, change]) : Buffer.alloc(0);
const hdr = Buffer.alloc(20);
hdr.writeUInt16BE(0x0001, 0); hdr.writeUInt16BE(attrs.length, 2); hdr.writeUInt32BE(0x2112a442, 4); tid.copy(hdr, 8);
const req = Buffer.concat([hdr, attrs]);

function addr(buf, off, xor) {
  const fam = buf[off + 1];
  let p = buf.readUInt16BE(off + 2);
  if (xor) p ^= 0x2112;
  if (fam === 1) {
    const a = [...buf.subarray(off + 4, off + 8)].map((b, i) => (xor ? b ^ [0x21, 0x12, 0xa4, 0x42][i] : b));
    return `${a.join('.')}:${p}`;
  }
  const key = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), tid]);
  const a = [...buf.subarray(off + 4, off + 20)].map((b, i) => (xor ? b ^ key[i] : b));
  const g = [];
  for (let i = 0; i < 16; i += 2) g.push(((a[i] << 8) | a[i + 1]).toString(16));
  return `[${g.join(':')}]:${p}`;
}

const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'timeout', server: `${host}:${port}`, change })); sock.close(); process.exit(1); }, 2000);
sock.on('message', (msg, rinfo) => {
  if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0101 || !msg.subarray(8, 20).equals(tid)) return;
  const out = { ok: true, server: `${host}:${port}`, from: `${rinfo.address}:${rinfo.port}`, local: sock.address().port, change };
  for (let off = 20; off + 4 <= msg.length;) {
    const type = msg.readUInt16BE(off); const len = msg.readUInt16BE(off + 2); const v = off + 4;
    if (type === 0x0020) out.xorMapped = addr(msg, v, true);
    else if (type === 0x0001) out.mapped = addr(msg, v, false);
    else if (type === 0x802b) out.responseOrigin = addr(msg, v, false);
    else if (type === 0x802c) out.otherAddress = addr(msg, v, false);
    off = v + len + ((4 - (len % 4)) % 4);
  }
  clearTimeout(timer);
  console.log(JSON.stringify(out));
  sock.close();
});
sock.bind(localPort, () => sock.send(req, port, host));
