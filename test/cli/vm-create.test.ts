import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines } from './helpers.js';

const UUID_LINE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const minimal = { name: 'web-1', host: 'hv1', spec: { memory: 256, disks: [{ image: 'debian-12' }] } };

describe('drover vm create (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  let dir: string;
  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'drover-cli-'));
  });
  after(async () => {
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates from a file, prints the uuid and fills the defaults, keeping unknown fields', async () => {
    const c = cluster(etcd);
    const file = join(dir, 'web-1.json');
    await writeFile(file, JSON.stringify({ ...minimal, x_team: { cost: 7 } }));
    const res = await c.drover(['vm', 'create', '-f', file]);
    assert.equal(res.code, 0, res.stderr);
    const uuid = res.stdout.trim();
    assert.match(uuid, UUID_LINE);
    const stored = await c.getVm(uuid);
    assert.ok(stored);
    assert.equal(stored.uuid, uuid);
    assert.equal(stored.status, 'REQUESTED_NEW');
    assert.deepEqual(stored.spec, { memory: 256, disks: [{ image: 'debian-12' }], vcpus: 1, vnc: 'unix', restart: 'always' });
    assert.deepEqual(stored.x_team, { cost: 7 });
  });

  it('creates from stdin with the given uuid and prints the record with --json', async () => {
    const c = cluster(etcd);
    const uuid = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
    const input = { ...minimal, uuid, status: 'REQUESTED_NEW', spec: { ...minimal.spec, vcpus: 2, vnc: 'none', restart: 'never' } };
    const res = await c.drover(['vm', 'create', '-f', '-', '--json'], { stdin: JSON.stringify(input) });
    assert.equal(res.code, 0, res.stderr);
    const printed = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.deepEqual(printed, input);
    assert.deepEqual(await c.getVm(uuid), input);
  });

  it('rejects an invalid record naming the field, and writes nothing', async () => {
    const c = cluster(etcd);
    const res = await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify({ ...minimal, spec: { memory: 'lots', disks: [{ image: 'x' }] } }) });
    assert.equal(res.code, 1);
    assert.equal(res.stdout, '');
    assert.equal(lines(res.stderr).length, 1);
    assert.match(res.stderr, /^drover: Field spec\.memory is invalid/);
    assert.equal(await c.kv.count(c.keys.vmPrefix), 0);
  });

  it('rejects input that is not JSON, and an unreadable file', async () => {
    const c = cluster(etcd);
    const bad = await c.drover(['vm', 'create', '-f', '-'], { stdin: '{"name": ' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^drover: stdin is not valid JSON/);
    const missing = await c.drover(['vm', 'create', '-f', join(dir, 'nope.json')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^drover: Cannot read .*nope\.json: no such file\.\n$/);
    assert.equal(await c.kv.count(c.keys.vmPrefix), 0);
  });

  it('refuses a name another record already uses', async () => {
    const c = cluster(etcd);
    const first = await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify(minimal) });
    assert.equal(first.code, 0, first.stderr);
    const second = await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify(minimal) });
    assert.equal(second.code, 1);
    assert.equal(second.stderr, `drover: The name web-1 is already used by VM ${first.stdout.trim()}.\n`);
    assert.equal(await c.kv.count(c.keys.vmPrefix), 1);
  });

  it('refuses a uuid that already exists', async () => {
    const c = cluster(etcd);
    const uuid = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
    assert.equal((await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify({ ...minimal, uuid }) })).code, 0);
    const again = await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify({ ...minimal, uuid, name: 'other' }) });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists/);
  });

  it('needs -f: a usage error', async () => {
    const c = cluster(etcd);
    const res = await c.drover(['vm', 'create']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^drover: required option '-f, --file <file>' not specified; see `drover vm create --help`\.\n$/);
  });
});
