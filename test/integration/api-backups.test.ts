/**
 * Backups through the API (docs/backups.md, "Through the API"): real etcd,
 * a real `drover agent` with real qemu (TCG), s3rver as the backup store,
 * the API in this process. A user backs up its RUNNING VM (the agent takes
 * a snapshot through the VM's own snapshot_request, copies the disk at it,
 * uploads it and deletes the snapshot), lists the backup, overwrites the
 * disk once the VM is stopped and restores it: the bytes come back. Other
 * users get 404, an auditor 403, a running VM's restore 409; a request a
 * previous agent run left `running` is failed with a sentence.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { addUser, createToken } from '../../src/auth/accounts.js';
import type { Role } from '../../src/contract/auth-records.js';
import { startApi, type RunningApi } from '../../src/api/run-api.js';
import { AuthRepository } from '../../src/store/auth-repository.js';
import { apiEtcd, startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GUEST_DIR, pidAlive, startCluster, type Cluster } from '../helpers/agent-harness.js';
import { S3RVER_CREDENTIALS, startTestS3, type TestS3 } from '../helpers/s3-server.js';
import { runDrover } from '../cli/helpers.js';
import { quietLogger } from '../api/helpers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: string };
}

/** qemu-io's pattern check of the first MiB: true when every byte is `pattern`. */
async function holdsPattern(disk: string, pattern: number): Promise<boolean> {
  try {
    await run('qemu-io', ['-f', 'qcow2', '-c', `read -P ${pattern} 0 ${MiB}`, disk]);
    return true;
  } catch (err) {
    // qemu-io exits 1 and says so when a byte differs; anything else is a failure of the check itself.
    if (/Pattern verification failed/.test(String((err as { stdout?: string }).stdout))) return false;
    throw err;
  }
}

describe('backups through the API (real agent, real qemu, s3rver)', () => {
  let etcd: TestEtcd;
  let s3: TestS3;
  let cluster: Cluster;
  let api: RunningApi;
  const tokens: Record<string, string> = {};
  let disk: string;
  let uuid: string;

  const call = async (who: string, method: string, path: string, body?: unknown): Promise<Answer> => {
    const headers: Record<string, string> = { authorization: `Bearer ${tokens[who]}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${api.url}${path}`, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Answer['body']) : {} };
  };
  const drover = (args: string[]) => runDrover([...args, '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { timeoutMs: 60_000 });

  before(async () => {
    [etcd, s3] = await Promise.all([startTestEtcd(), startTestS3()]);
    cluster = await startCluster(etcd);
    await cluster.startAgent('hv1', { config: { s3_access_key_id: S3RVER_CREDENTIALS.accessKeyId, s3_secret_access_key: S3RVER_CREDENTIALS.secretAccessKey } });
    api = await startApi({ ...(await apiEtcd(etcd, cluster.prefix)), prefix: cluster.prefix, listen: '127.0.0.1:0', bootDirs: [GUEST_DIR], logger: quietLogger, settings: { s3Credentials: S3RVER_CREDENTIALS } });
    const auth = new AuthRepository(cluster.kv, cluster.keys);
    const people: Array<[string, Role]> = [['alice', 'user'], ['bob', 'user'], ['audrey', 'auditor']];
    for (const [name, role] of people) {
      await addUser(auth, { name, role, now: new Date() });
      tokens[name] = (await createToken(auth, { user: name, now: new Date() })).token;
    }
    disk = join(cluster.dir, 'bk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(64 * MiB)]);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a 0 ${MiB}`, disk]);
    uuid = await cluster.createVm({ name: 'bk', owner: 'alice', spec: { disks: [{ path: disk }] } });
    await cluster.waitForStatus(uuid, 'RUNNING', 90_000);
  });
  after(async () => {
    await api?.stop();
    await cluster?.close();
    await Promise.all([etcd?.close(), s3?.close()]);
  });

  it('needs a backup store first; `drover backup store set` sets it', async () => {
    const early = await call('alice', 'POST', '/api/v1/vms/bk/backups', { name: 'first' });
    assert.equal(early.status, 409);
    assert.match(early.body.error ?? '', /^No backup store is set for this cluster; .*drover backup store set/);
    assert.equal((await cluster.getVm(uuid))?.backup_request, undefined, 'nothing written');

    const set = await drover(['backup', 'store', 'set', '--s3-bucket', s3.bucket, '--s3-endpoint', s3.endpoint, '--s3-path-style']);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, `Backup store set: s3://${s3.bucket}/backups/ (${s3.endpoint}, region us-east-1, path-style).\n`);
    const got = await drover(['backup', 'store', 'get', '--json']);
    assert.deepEqual(JSON.parse(got.stdout), { bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', path_style: true });
  });

  it('backs up a RUNNING VM at a snapshot; the VM runs on and the snapshot is gone', async () => {
    const pid = ((await cluster.getVm(uuid))?.runtime as { pid: number }).pid;
    const r = await call('alice', 'POST', '/api/v1/vms/bk/backups?wait=true&timeout=120', { name: 'first' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const req = r.body.request as { op: string; state: string; requestor: string; host: string; result: { id: string; name: string; size: number } };
    assert.deepEqual([req.op, req.state, req.requestor, req.host, req.result.name], ['backup', 'done', 'alice', 'hv1', 'first']);
    assert.ok(req.result.size > MiB, `the flattened copy holds the written MiB (${req.result.size} bytes)`);
    const vm = await cluster.getVm(uuid);
    assert.equal(vm?.status, 'RUNNING');
    assert.equal((vm?.runtime as { pid: number }).pid, pid, 'the same qemu');
    assert.ok(pidAlive(pid));
    assert.deepEqual(vm?.snapshots ?? [], [], 'the temporary snapshot is gone');
    await cluster.waitForEvent((e) => e.event === 'vm.backup_created' && e.vm === uuid, 10_000, 'vm.backup_created');

    const listed = await call('alice', 'GET', '/api/v1/vms/bk/backups');
    assert.equal(listed.status, 200);
    const backups = listed.body.backups as Array<{ id: string; name: string; disks: number; size: number }>;
    assert.deepEqual(backups.map((b) => [b.id, b.name, b.disks, b.size]), [[req.result.id, 'first', 1, req.result.size]]);
    assert.equal((listed.body.request as { state: string }).state, 'done');
    // The CLI sees it too, from the same store setting (no --s3-bucket).
    const cli = await runDrover(['backup', 'list', 'bk', '--json', '--etcd', etcd.endpoint, '--prefix', cluster.prefix], { env: s3.env });
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual((JSON.parse(cli.stdout) as Array<{ id: string }>).map((m) => m.id), [req.result.id]);
  });

  it('refuses other users (404), an auditor acting (403), bad input (400) and a restore of a running VM (409)', async () => {
    for (const [method, path] of [['GET', '/backups'], ['POST', '/backups'], ['POST', '/backups/first/restore'], ['DELETE', '/backups/first']] as const) {
      const r = await call('bob', method, `/api/v1/vms/bk${path}`, method === 'POST' && path === '/backups' ? {} : undefined);
      assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.body)}`);
    }
    assert.equal((await call('audrey', 'GET', '/api/v1/vms/bk/backups')).status, 200);
    const acting = await call('audrey', 'POST', '/api/v1/vms/bk/backups', {});
    assert.equal(acting.status, 403);
    assert.equal((await call('audrey', 'DELETE', '/api/v1/vms/bk/backups/first')).status, 403);
    const badName = await call('alice', 'POST', '/api/v1/vms/bk/backups', { name: '../etc' });
    assert.equal(badName.status, 400);
    assert.equal((await call('alice', 'POST', '/api/v1/vms/bk/backups', { name: 'x', host: 'hv2' })).status, 400);
    assert.equal((await call('alice', 'POST', '/api/v1/vms/bk/backups', '{"name":')).status, 400);
    // The request field is drover's to write: not through PATCH.
    const patched = await call('alice', 'PATCH', '/api/v1/vms/bk', { backup_request: { op: 'restore', id: 'x', backup: 'first' } });
    assert.equal(patched.status, 400, JSON.stringify(patched.body));
    assert.equal((patched.body as { field?: string }).field, 'backup_request');
    const running = await call('alice', 'POST', '/api/v1/vms/bk/backups/first/restore');
    assert.equal(running.status, 409);
    assert.match(running.body.error ?? '', /^VM bk \(.*\) is RUNNING; stop it first \(a restore overwrites the disks of a stopped VM only\)\.$/);
    const unknown = await call('alice', 'POST', '/api/v1/vms/bk/backups/nope/restore');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'No backup "nope" was found.');
    assert.equal(((await cluster.getVm(uuid))?.backup_request as { state: string }).state, 'done', 'no refused request was written');
  });

  it('restores a stopped VM\'s disk from the backup, bit for bit', async () => {
    assert.equal((await call('alice', 'POST', '/api/v1/vms/bk/stop?wait=STOP&timeout=60')).status, 200);
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0xa5 0 ${MiB}`, disk]);
    assert.equal(await holdsPattern(disk, 0x5a), false, 'the disk was overwritten');
    const r = await call('alice', 'POST', '/api/v1/vms/bk/backups/first/restore?wait=true&timeout=120');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([(r.body.request as { op: string }).op, (r.body.request as { state: string }).state], ['restore', 'done']);
    assert.equal(await holdsPattern(disk, 0x5a), true, 'the backed-up bytes are back');
    await run('qemu-img', ['check', '-q', disk]);
    await cluster.waitForEvent((e) => e.event === 'vm.backup_restored' && e.vm === uuid, 10_000, 'vm.backup_restored');
    // And the VM boots from it again.
    assert.equal((await call('alice', 'POST', '/api/v1/vms/bk/start?wait=RUNNING&timeout=90')).status, 200);
  });

  it('fails a request a previous agent run left running, naming its leftover snapshot', async () => {
    const other = join(cluster.dir, 'orphan.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', other, String(MiB)]);
    const orphan = await cluster.createVm({
      name: 'orphan',
      owner: 'alice',
      status: 'STOP',
      spec: { disks: [{ path: other }] },
      backup_request: { op: 'backup', id: 'old', state: 'running', host: 'hv1', requested_at: '2026-12-06T00:00:00.000Z', snapshot: 'drover-backup-0123456789ab' },
    });
    const vm = await cluster.waitForVm(orphan, (v) => (v?.backup_request as { state?: string } | undefined)?.state === 'failed', 30_000, 'the orphaned request to fail');
    assert.equal(
      (vm?.backup_request as { error: string }).error,
      'The agent on hv1 restarted during the backup, which did not finish; its temporary snapshot drover-backup-0123456789ab is being deleted; ask again.',
    );
    // A start is no longer held back by it.
    const start = await call('alice', 'POST', '/api/v1/vms/orphan/start');
    assert.equal(start.status, 202, JSON.stringify(start.body));
  });

  it('deletes a backup: gone from the list', async () => {
    const del = await call('alice', 'DELETE', '/api/v1/vms/bk/backups/first');
    assert.equal(del.status, 200, JSON.stringify(del.body));
    const listed = await call('alice', 'GET', '/api/v1/vms/bk/backups');
    assert.deepEqual(listed.body.backups, []);
    assert.equal((await call('alice', 'DELETE', '/api/v1/vms/bk/backups/first')).status, 404);
  });
});
