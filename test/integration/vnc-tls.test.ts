/**
 * VNC over TCP with TLS (vnc_tls_dir; docs/security.md, "VNC over TCP"):
 * a throwaway CA and server certificate made with openssl, qemu (as
 * drover-qemu) offers only VeNCrypt; with a password as well, still only
 * VeNCrypt (the password is checked inside TLS). Real qemu.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, chown, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { lookupQemuUser } from '../../src/hypervisor/qemu/qemu-user.js';
import { makeQemuHarness, type QemuHarness } from '../helpers/qemu-harness.js';
import { ensureGuest, guestSpec } from '../helpers/guest.js';
import { vncSecurityTypes } from '../helpers/vnc-probe.js';

const run = promisify(execFile);

describe('VNC over TCP with TLS (real qemu, openssl)', () => {
  let h: QemuHarness;
  let tlsDir: string;
  before(async () => {
    h = await makeQemuHarness();
    tlsDir = join(h.dir, 'vnc-tls');
    await mkdir(tlsDir);
    const o = (args: string[]) => run('openssl', args, { cwd: tlsDir });
    await o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '1', '-subj', '/CN=drover test CA']);
    await o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server-key.pem', '-out', 'server.csr', '-subj', '/CN=localhost']);
    await o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca-cert.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'server-cert.pem', '-days', '1']);
    // Readable by qemu's user, as docs/security.md asks: the key by its group only.
    const user = await lookupQemuUser('drover-qemu');
    assert.ok(user);
    await chmod(tlsDir, 0o750);
    await chown(tlsDir, 0, user.gid);
    await chown(join(tlsDir, 'server-key.pem'), 0, user.gid);
    await chmod(join(tlsDir, 'server-key.pem'), 0o640);
  });
  after(async () => {
    await h?.close();
  });

  it('offers only VeNCrypt (19), with and without a password', async () => {
    const files = await ensureGuest();
    const passwordFile = join(h.dir, 'vnc-password');
    await writeFile(passwordFile, 'tlspass1\n', { mode: 0o600 });
    for (const vnc of [{ tlsDir }, { tlsDir, passwordFile }]) {
      const hv = h.newInstance({ vnc });
      const uuid = randomUUID();
      const handle = await hv.start({ uuid, name: 'vnc-tls', spec: guestSpec(files, 'idle', { vnc: 'tcp' }) });
      assert.match(handle.vnc ?? '', /^127\.0\.0\.1:59\d\d$/);
      assert.deepEqual(await vncSecurityTypes(handle.vnc ?? ''), [19], `only TLS is offered (${JSON.stringify(Object.keys(vnc))})`);
      await hv.stop(uuid, { timeoutMs: 0, force: true });
    }
  });
});
