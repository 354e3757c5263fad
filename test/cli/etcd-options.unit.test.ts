/** How the CLI picks etcd's endpoint and TLS files (src/cli/global-options.ts): flags, environment, the local drover up, and its one warning. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveGlobalOptions } from '../../src/cli/global-options.js';
import { UP_CLIENT_FILE } from '../../src/embedded/up-client.js';

function stderr(): { stderr: { write(s: string): boolean }; text: () => string } {
  let out = '';
  return { stderr: { write: (s: string) => ((out += s), true) }, text: () => out };
}

describe('etcd options of the CLI', () => {
  it('warns once about plain HTTP to another machine, never for loopback or TLS', () => {
    const remote = stderr();
    resolveGlobalOptions({ etcd: 'http://10.0.0.5:2379,http://10.0.0.6:2379' }, {}, remote);
    assert.equal(remote.text().split('\n').filter(Boolean).length, 1);
    assert.match(remote.text(), /^drover: warning: etcd is reached over plain HTTP without a client certificate/);
    for (const etcd of ['http://127.0.0.1:2379', 'localhost:2379', 'http://[::1]:2379']) {
      const local = stderr();
      resolveGlobalOptions({ etcd }, {}, local);
      assert.equal(local.text(), '', etcd);
    }
    const tls = stderr();
    const o = resolveGlobalOptions({ etcd: '10.0.0.5:2379', etcdCa: '/pki/ca.crt', etcdCert: '/pki/admin.crt', etcdKey: '/pki/admin.key' }, {}, tls);
    assert.equal(tls.text(), '');
    assert.deepEqual(o.etcdTls, { ca: '/pki/ca.crt', cert: '/pki/admin.crt', key: '/pki/admin.key' });
  });

  it('takes the files from the environment, flags first, and refuses half a certificate', () => {
    const o = resolveGlobalOptions({ etcdCert: '/f/c.crt', etcdKey: '/f/c.key' }, { DROVER_ETCD_CA: '/e/ca.crt', DROVER_ETCD_CERT: '/e/x.crt', DROVER_ETCD_KEY: '/e/x.key' });
    assert.deepEqual(o.etcdTls, { ca: '/e/ca.crt', cert: '/f/c.crt', key: '/f/c.key' });
    assert.throws(() => resolveGlobalOptions({ etcdCert: '/f/c.crt' }, {}), /needs both --etcd-cert and --etcd-key/);
    assert.throws(() => resolveGlobalOptions({ etcdCert: '/f/c.crt', etcdKey: '/f/c.key' }, {}), /needs --etcd-ca/);
    assert.equal(resolveGlobalOptions({}, { DROVER_ETCD_CA: '' }).etcdTls, null, 'an empty variable is unset');
  });

  it("uses the local drover up's endpoint and admin certificate when told nothing, and not when told an endpoint", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-upclient-'));
    try {
      const up = { endpoint: 'https://127.0.0.1:2379', ca: '/s/pki/ca.crt', cert: '/s/pki/admin.crt', key: '/s/pki/admin.key' };
      await writeFile(join(dir, UP_CLIENT_FILE), JSON.stringify(up));
      const o = resolveGlobalOptions({}, { DROVER_STATE_DIR: dir });
      assert.deepEqual(o.endpoints, ['https://127.0.0.1:2379']);
      assert.deepEqual(o.etcdTls, { ca: up.ca, cert: up.cert, key: up.key });
      const other = resolveGlobalOptions({ etcd: 'http://127.0.0.1:4001' }, { DROVER_STATE_DIR: dir });
      assert.equal(other.etcdTls, null);
      await writeFile(join(dir, UP_CLIENT_FILE), '{"endpoint": 1}');
      assert.deepEqual(resolveGlobalOptions({}, { DROVER_STATE_DIR: dir }).endpoints, ['http://127.0.0.1:2379'], 'a malformed file is ignored');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
