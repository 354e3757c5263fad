/**
 * The start of an RFB handshake, as a VNC client does it: read the server's
 * version, answer 3.8, and read the security types it offers (1 None,
 * 2 VNC authentication, 19 VeNCrypt, i.e. TLS).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';

export async function vncSecurityTypes(address: string): Promise<number[]> {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  const port = Number(address.slice(colon + 1));
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port });
    let buf = Buffer.alloc(0);
    let sentVersion = false;
    sock.setTimeout(10_000, () => reject(new Error('VNC server did not answer')));
    sock.on('error', reject);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (!sentVersion && buf.length >= 12) {
        assert.match(buf.subarray(0, 12).toString('latin1'), /^RFB 003\.00\d\n$/);
        sock.write('RFB 003.008\n');
        sentVersion = true;
        buf = buf.subarray(12);
      }
      if (sentVersion && buf.length >= 1 && buf.length >= 1 + (buf[0] ?? 0)) {
        sock.destroy();
        resolve([...buf.subarray(1, 1 + (buf[0] ?? 0))]);
      }
    });
  });
}
