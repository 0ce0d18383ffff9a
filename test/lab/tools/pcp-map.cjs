#!/usr/bin/env node
// Minimal PCP (RFC 6887) MAP client on node:dgram, no dependencies.
//   node pcp-map.cjs GATEWAY INTERNAL_PORT [udp|tcp] [LIFETIME] [SUGGESTED_EXT_PORT] [NONCE_HEX]
// Prints one JSON line with the server's answer (and the nonce used). LIFETIME 0
// deletes a mapping, but RFC 6887 only lets the same nonce do that: pass the
// nonce printed when the mapping was made.
'use strict';
const dgram = require('node:dgram');
const crypto = require('node:crypto');

const [gw, iportS, protoS = 'udp', lifeS = '120', extS = '0', nonceHex] = process.argv.slice(2);
if (!gw || !iportS) { console.error('usage: pcp-map.cjs GATEWAY INTERNAL_PORT [udp|tcp] [LIFETIME] [EXT_PORT]'); process.exit(2); }
const proto = protoS === 'tcp' ? 6 : 17;
const RESULT = ['SUCCESS', 'UNSUPP_VERSION', 'NOT_AUTHORIZED', 'MALFORMED_REQUEST', 'UNSUPP_OPCODE', 'UNSUPP_OPTION',
  'MALFORMED_OPTION', 'NETWORK_FAILURE', 'NO_RESOURCES', 'UNSUPP_PROTOCOL', 'USER_EX_QUOTA', 'CANNOT_PROVIDE_EXTERNAL',
  'ADDRESS_MISMATCH', 'EXCESSIVE_REMOTE_PEERS'];

const v4mapped = (ip) => Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip.split('.').map(Number)]);
const fromMapped = (b) => (b.subarray(0, 12).equals(v4mapped('0.0.0.0').subarray(0, 12)) ? [...b.subarray(12)].join('.') : b.toString('hex'));

const sock = dgram.createSocket('udp4');
const nonce = nonceHex ? Buffer.from(nonceHex, 'hex') : crypto.randomBytes(12);
const timer = setTimeout(() => { console.log(JSON.stringify({ ok: false, error: 'timeout' })); sock.close(); process.exit(1); }, 3000);
sock.on('message', (m) => {
  if (m.length < 60 || m[1] !== 0x81 || !m.subarray(24, 36).equals(nonce)) return;
  clearTimeout(timer);
  const rc = m[3];
  console.log(JSON.stringify({
    ok: rc === 0, result: RESULT[rc] || rc, lifetime: m.readUInt32BE(4), epoch: m.readUInt32BE(8),
    protocol: m[36] === 6 ? 'tcp' : 'udp', internalPort: m.readUInt16BE(40), externalPort: m.readUInt16BE(42),
    externalAddress: fromMapped(m.subarray(44, 60)), nonce: nonce.toString('hex'),
  }));
  sock.close();
});
sock.connect(5351, gw, () => {
  const req = Buffer.alloc(60);
  req[0] = 2; req[1] = 1; // version 2, request, opcode MAP
  req.writeUInt32BE(Number(lifeS), 4);
  v4mapped(sock.address().address).copy(req, 8); // PCP client IP = our source address
  nonce.copy(req, 24);
  req[36] = proto;
  req.writeUInt16BE(Number(iportS), 40);
  req.writeUInt16BE(Number(extS), 42);
  v4mapped('0.0.0.0').copy(req, 44);
  sock.send(req);
});
