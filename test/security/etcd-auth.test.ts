/**
 * drover's PKI and etcd's users (docs/security.md), end to end: `drover pki
 * init|add-host` with Debian's openssl, an etcd on TLS with client
 * certificates, `drover etcd setup-auth`, then each component's
 * certificate against its grants: what it may do works, the rest is
 * refused by etcd.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { EtcdProcess } from '../../src/embedded/etcd-process.js';
import { pkiFiles } from '../../src/security/pki.js';
import { createEtcdClient } from '../../src/store/etcd-client.js';
import { runDrover } from '../cli/helpers.js';

describe('etcd TLS and users (drover pki, drover etcd setup-auth)', () => {
  let dir = '';
  let pki = '';
  let etcd: EtcdProcess;
  const clients: Etcd3[] = [];
  const as = (who: string): Etcd3 => {
    const c = createEtcdClient([etcd.endpoint], { tls: pkiFiles(pki, who), callTimeoutMs: 3000 });
    clients.push(c);
    return c;
  };
  const noEnv = { DROVER_ETCD_CA: '', DROVER_ETCD_CERT: '', DROVER_ETCD_KEY: '' };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-pki-'));
    pki = join(dir, 'pki');
  });
  after(async () => {
    for (const c of clients) c.close();
    await etcd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('pki init makes a CA and one certificate per user, keys 0600, CN = user; again, it keeps them; add-host adds one', async () => {
    const first = await runDrover(['pki', 'init', '--dir', pki, '--hosts', 'hv1,hv2', '--json'], { env: noEnv });
    assert.equal(first.code, 0, first.stderr);
    const files = (await readdir(pki)).sort();
    assert.deepEqual(files, ['admin', 'api', 'ca', 'etcd', 'host-hv1', 'host-hv2', 'scheduler'].flatMap((w) => [`${w}.crt`, `${w}.key`]).sort());
    assert.equal((await stat(pki)).mode & 0o777, 0o700);
    for (const f of files.filter((n) => n.endsWith('.key'))) assert.equal((await stat(join(pki, f))).mode & 0o777, 0o600, f);
    const ca = new X509Certificate(await readFile(join(pki, 'ca.crt')));
    for (const who of ['admin', 'api', 'scheduler', 'host-hv1', 'etcd']) {
      const cert = new X509Certificate(await readFile(join(pki, `${who}.crt`)));
      assert.equal(cert.subject, `CN=${who}`);
      assert.ok(cert.verify(ca.publicKey), `${who} is signed by the CA`);
    }
    assert.match(new X509Certificate(await readFile(join(pki, 'etcd.crt'))).subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    const before = await readFile(join(pki, 'host-hv1.crt'));
    const again = await runDrover(['pki', 'init', '--dir', pki, '--hosts', 'hv1'], { env: noEnv });
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing to do/);
    assert.deepEqual(await readFile(join(pki, 'host-hv1.crt')), before, 'an existing certificate is kept');
    const add = await runDrover(['pki', 'add-host', 'hv3', '--dir', pki], { env: noEnv });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /host-hv3\.crt/);
  });

  it('refuses a hostile host name, and add-host without a CA, with one sentence', async () => {
    const bad = await runDrover(['pki', 'add-host', '../x', '--dir', pki], { env: noEnv });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^drover: The host name "\.\.\/x" is not valid/);
    const sub = await runDrover(['pki', 'init', '--dir', pki, '--hosts', 'a/b'], { env: noEnv });
    assert.match(sub.stderr, /^drover: The host name "a\/b" is not valid/);
    const none = await runDrover(['pki', 'add-host', 'hv4', '--dir', join(dir, 'empty')], { env: noEnv });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /has no CA \(ca\.key\); run drover pki init/);
  });

  it('setup-auth turns auth on with a role per component; each certificate gets its grants and nothing else', async () => {
    etcd = new EtcdProcess({ dataDir: join(dir, 'data'), logFile: join(dir, 'etcd.log'), tlsDir: pki });
    await etcd.start();
    const setup = await runDrover(['etcd', 'setup-auth', '--etcd', etcd.endpoint, '--pki', pki, '--prefix', '/v1', '--scheduler-hosts', 'hv1'], { env: noEnv });
    assert.equal(setup.code, 0, setup.stderr);
    assert.match(setup.stdout, /etcd users: root, admin, scheduler, api, host-hv1, host-hv2, host-hv3/);
    assert.match(setup.stdout, /role drover:\/v1:host-hv3/);

    const hv1 = as('host-hv1');
    await hv1.put('/v1/host/hv1').value('{}').exec();
    await hv1.put('/v1/vm/u1').value('{}').exec();
    await hv1.put('/v1/stats/hv1').value('{}').exec();
    await hv1.put('/v1/pool/p').value('{}').exec().catch(() => assert.fail('hv1 also runs the scheduler, which writes pools'));
    await assert.rejects(hv1.put('/v1/alive/hv2').value('{}').exec(), /permission denied/, "another host's liveness");
    await assert.rejects(hv1.get('/v1/auth/user/alice').string(), /permission denied/, 'P/auth/');
    await assert.rejects(hv1.put('/v2/vm/u1').value('{}').exec(), /permission denied/, 'another prefix');
    const hv2 = as('host-hv2');
    await hv2.put('/v1/host/hv2').value('{}').exec();
    await assert.rejects(hv2.put('/v1/host/hv1').value('{}').exec(), /permission denied/, "another host's record");
    await assert.rejects(hv2.put('/v1/host/hv20').value('{}').exec(), /permission denied/, "a record whose name starts with the host's");
    await assert.rejects(hv2.put('/v1/pool/p').value('{}').exec(), /permission denied/, 'a host that runs no scheduler writes no pool');
    const sched = as('scheduler');
    await sched.put('/v1/vm/u2').value('{}').exec();
    await assert.rejects(sched.get('/v1/auth/token/t').string(), /permission denied/);
    await assert.rejects(sched.put('/v1/alive/hv1').value('{}').exec(), /permission denied/, "a host's liveness is its agent's alone");
    const api = as('api');
    await api.put('/v1/auth/user/alice').value('{}').exec();
    assert.equal(await api.get('/v1/alive/hv1').string(), null);
    await assert.rejects(api.put('/v1/alive/hv1').value('{}').exec(), /permission denied/);
  });

  it('etcd refuses a client without a certificate, and the CLI says so in one sentence; running setup-auth again changes nothing', async () => {
    const anon = await runDrover(['vm', 'list', '--etcd', etcd.endpoint, '--etcd-ca', join(pki, 'ca.crt')], { env: noEnv });
    assert.equal(anon.code, 1);
    assert.match(anon.stderr, /^drover: etcd at https:\/\/127\.0\.0\.1:\d+ refused the TLS handshake: give a client certificate signed by its CA \(--etcd-cert, --etcd-key\)\.\n$/);
    const host = pkiFiles(pki, 'host-hv2');
    const forbidden = await runDrover(['user', 'list', '--etcd', etcd.endpoint, '--etcd-ca', host.ca, '--etcd-cert', host.cert, '--etcd-key', host.key, '--prefix', '/v1'], { env: noEnv });
    assert.equal(forbidden.code, 1);
    assert.match(forbidden.stderr, /^drover: etcd refused the list of \/v1\/auth\/user\/: this client's etcd user has no permission for it\.\n$/);
    const again = await runDrover(['etcd', 'setup-auth', '--etcd', etcd.endpoint, '--pki', pki, '--prefix', '/v1'], { env: noEnv });
    assert.equal(again.code, 0, again.stderr);
    const half = await runDrover(['vm', 'list', '--etcd', etcd.endpoint, '--etcd-cert', host.cert], { env: noEnv });
    assert.equal(half.code, 2);
    assert.match(half.stderr, /needs both --etcd-cert and --etcd-key/);
  });
});
