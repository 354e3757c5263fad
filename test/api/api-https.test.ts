/** `drover api --tls-cert/--tls-key`: HTTPS with a throwaway certificate, and the session cookie gets Secure. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { addUser } from '../../src/auth/accounts.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import { keySpace } from '../../src/contract/keys.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { KvStore } from '../../src/store/kv-store.js';
import { apiEtcd, startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { quietLogger } from './helpers.js';

const run = promisify(execFile);

function post(url: string, ca: Buffer | undefined, body: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

describe('the API over HTTPS', () => {
  let etcd: TestEtcd;
  let dir = '';
  let api: RunningApi | null = null;
  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'drover-tls-'));
  });
  after(async () => {
    await api?.stop();
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves HTTPS with the given certificate and marks the session cookie Secure', async () => {
    const cert = join(dir, 'api.crt');
    const key = join(dir, 'api.key');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert]);
    const prefix = etcd.newPrefix();
    const auth = new AuthRepository(new KvStore(etcd.client), keySpace(prefix));
    await addUser(auth, { name: 'alice', role: 'user', password: 'correct horse', now: new Date() });
    api = await startApi({ ...(await apiEtcd(etcd, prefix)), prefix, listen: '127.0.0.1:0', tlsCert: cert, tlsKey: key, logger: quietLogger });
    assert.match(api.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const { readFile } = await import('node:fs/promises');
    const res = await post(`${api.url}/api/v1/login`, await readFile(cert), { user: 'alice', password: 'correct horse' });
    assert.equal(res.status, 200);
    assert.match(String(res.headers['set-cookie']), /; Secure/i);
    await assert.rejects(post(`${api.url}/api/v1/login`, undefined, {}), /self-signed|certificate/i, 'an unknown certificate is refused by a client that checks');
  });

  it('refuses a certificate without its key, and a file it cannot read, in one sentence', async () => {
    await assert.rejects(startApi({ ...(await apiEtcd(etcd, '/x')), prefix: '/x', listen: '127.0.0.1:0', tlsCert: '/nonexistent.crt', logger: quietLogger }), /HTTPS needs both --tls-cert and --tls-key\./);
    await assert.rejects(startApi({ ...(await apiEtcd(etcd, '/x')), prefix: '/x', listen: '127.0.0.1:0', tlsCert: '/nonexistent.crt', tlsKey: '/nonexistent.key', logger: quietLogger }), /^DroverError: Cannot read the TLS certificate or key: .*nonexistent/);
  });
});
