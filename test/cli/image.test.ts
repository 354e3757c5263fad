/**
 * `drover image` as a subprocess against a real etcd, with a directory image
 * store: the store setting, imports from a file and from a local HTTP
 * server (re-checked with ETag / If-Modified-Since), the formats drover
 * refuses, naming (ambiguity, bad names), and delete: refused while a VM
 * names the image (which puts it back), and a `deleting` image refused by
 * `vm create` and by an agent's disk preparation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ImageRecord } from '../../src/contract/image-record.js';
import { DroverError } from '../../src/lib/errors.js';
import { silentLogger } from '../../src/lib/logger.js';
import { createAgentDiskPreparer } from '../../src/storage/agent-disks.js';
import { ImageRepository } from '../../src/store/image-repository.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster as makeCluster, type Cluster } from './helpers.js';

const run = promisify(execFile);

describe('drover image (CLI, directory store)', () => {
  let etcd: TestEtcd;
  let c: Cluster;
  let dir: string;
  let storeDir: string;

  before(async () => {
    etcd = await startTestEtcd();
    c = makeCluster(etcd);
    dir = await mkdtemp(join(tmpdir(), 'drover-image-cli-'));
    storeDir = join(dir, 'store');
  });
  after(async () => {
    await etcd?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('says what to do without a store, refuses bad settings, and sets and shows one', async () => {
    const none = await c.drover(['image', 'import', '/etc/hostname']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^drover: No image store is set for this cluster; set one with `drover image store set dir PATH`/);
    const rel = await c.drover(['image', 'store', 'set', 'dir', 'relative/path']);
    assert.equal(rel.stderr, 'drover: The image store setting is invalid: Field path is invalid: must be an absolute path without ".." segments (drover image store set).\n');
    const s3 = await c.drover(['image', 'store', 'set', 's3', '--bucket', 'B!']);
    assert.match(s3.stderr, /^drover: The image store setting is invalid: Field bucket is invalid: must be an S3 bucket name/);
    assert.equal((await c.drover(['image', 'store', 'set', 'dir', storeDir])).stdout, `Image store set: dir ${storeDir}.\n`);
    assert.equal((await c.drover(['image', 'store', 'get'])).stdout, `dir ${storeDir}\n`);
  });

  it('imports a raw file under its file name, records it, and puts its bytes in the store', async () => {
    const file = join(dir, 'tiny-disk.raw');
    const bytes = Buffer.alloc(256 * 1024, 7);
    await writeFile(file, bytes);
    const res = await c.drover(['image', 'import', file, '--version', '1.0', '--json']);
    assert.equal(res.code, 0, res.stderr);
    const rec = JSON.parse(res.stdout) as ImageRecord & { outcome: string };
    assert.deepEqual(
      { name: rec.name, version: rec.version, format: rec.format, size: rec.size, state: rec.state, outcome: rec.outcome },
      { name: 'tiny-disk', version: '1.0', format: 'raw', size: bytes.length, state: 'active', outcome: 'imported' },
    );
    assert.equal(rec.sha256, createHash('sha256').update(bytes).digest('hex'));
    assert.ok((await readFile(join(storeDir, 'images', rec.uuid))).equals(bytes));
    const again = await c.drover(['image', 'import', file, '--version', '1.0']);
    assert.equal(again.stderr, `drover: Image tiny-disk:1.0 exists (${rec.uuid}); give another --version or delete it first.\n`);
  });

  it('refuses formats drover does not run and qcow2 overlays, whatever the file is called', async () => {
    const vmdk = join(dir, 'disk.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'vmdk', vmdk, '1M']);
    const r1 = await c.drover(['image', 'import', vmdk]);
    assert.equal(r1.stderr, `drover: ${vmdk} is a vmdk image; drover takes qcow2 or raw (convert it with qemu-img convert -O qcow2).\n`);
    const base = join(dir, 'base.qcow2');
    const overlay = join(dir, 'overlay.raw');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1M']);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
    const r2 = await c.drover(['image', 'import', overlay]);
    assert.equal(r2.stderr, `drover: ${overlay} is a qcow2 overlay of ${base}; import a standalone image (qemu-img convert -O qcow2 flattens it).\n`);
    const r3 = await c.drover(['image', 'import', join(dir, 'missing.img')]);
    assert.equal(r3.stderr, `drover: The image file ${join(dir, 'missing.img')} does not exist.\n`);
    const r4 = await c.drover(['image', 'import', base, '--name', '../etc']);
    assert.equal(r4.code, 2);
    assert.match(r4.stderr, /^drover: The image name "\.\.\/etc" must match/);
    assert.deepEqual(await readdir(join(storeDir, 'images')).then((f) => f.filter((n) => !n.startsWith('.')).length), 1, 'nothing refused reached the store');
  });

  it('imports a URL, and on the next import of it asks with ETag and If-Modified-Since first', async () => {
    let body = Buffer.alloc(64 * 1024, 1);
    let etag = '"v1"';
    const seen: Array<{ inm?: string; ims?: string }> = [];
    const server: Server = createServer((req, res) => {
      seen.push({ ...(req.headers['if-none-match'] ? { inm: req.headers['if-none-match'] } : {}), ...(req.headers['if-modified-since'] ? { ims: req.headers['if-modified-since'] } : {}) });
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304).end();
        return;
      }
      res.writeHead(200, { 'Content-Length': body.length, ETag: etag, 'Last-Modified': 'Sun, 22 Nov 2026 09:00:00 GMT' }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/images/alpine-3.20.qcow2?x=1`;
    try {
      const first = await c.drover(['image', 'import', url, '--version', 'a', '--json']);
      assert.equal(first.code, 0, first.stderr);
      const rec = JSON.parse(first.stdout) as ImageRecord;
      assert.equal(rec.name, 'alpine-3.20');
      assert.deepEqual(rec.source, { type: 'url', url, etag: '"v1"', last_modified: 'Sun, 22 Nov 2026 09:00:00 GMT' });
      assert.match(first.stderr, /^download alpine-3\.20\.qcow2 {2}64\.0 KiB {2}.* {2}done$/m);

      const same = await c.drover(['image', 'import', url]);
      assert.equal(same.stdout, `Image alpine-3.20:a (${rec.uuid}) is up to date: the server says ${url} has not changed.\n`);
      assert.deepEqual(seen.at(-1), { inm: '"v1"', ims: 'Sun, 22 Nov 2026 09:00:00 GMT' });

      body = Buffer.alloc(64 * 1024, 2);
      etag = '"v2"';
      const changed = await c.drover(['image', 'import', url, '--version', 'b', '--json']);
      const rec2 = JSON.parse(changed.stdout) as ImageRecord;
      assert.notEqual(rec2.sha256, rec.sha256);
      assert.equal((rec2.source as { etag: string }).etag, '"v2"');

      const ambiguous = await c.drover(['image', 'get', 'alpine-3.20']);
      assert.equal(ambiguous.stderr, 'drover: Image name alpine-3.20 has versions a, b; say which with NAME:VERSION or the uuid.\n');
      const list = await c.drover(['image', 'list', '-H']);
      assert.deepEqual(list.stdout.trim().split('\n').map((l) => l.split(/\s+/).slice(1, 3).join(':')), ['alpine-3.20:a', 'alpine-3.20:b', 'tiny-disk:1.0']);

      const del = await c.drover(['image', 'delete', 'alpine-3.20:a']);
      assert.equal(del.stdout, `Image alpine-3.20:a (${rec.uuid}) deleted.\n`);
      assert.ok(!(await readdir(join(storeDir, 'images'))).includes(rec.uuid), 'the bytes went with the record');
      assert.equal((await c.drover(['image', 'get', rec.uuid])).stderr, `drover: No image is named "${rec.uuid}" (drover image list).\n`);
    } finally {
      server.close();
    }
  });

  it('lists malformed image records as invalid and keeps serving the good ones', async () => {
    await c.kv.put(c.keys.image('22222222-0000-4000-8000-000000000001'), '{not json');
    await c.kv.put(c.keys.image('22222222-0000-4000-8000-000000000002'), JSON.stringify({ uuid: '22222222-0000-4000-8000-000000000002', name: 'x', version: '1', format: 'vmdk' }));
    const list = await c.drover(['image', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^22222222-0000-4000-8000-000000000001 .* invalid: The image record is not valid JSON/m);
    assert.match(list.stdout, /^22222222-0000-4000-8000-000000000002 .* invalid: Image field format is invalid/m);
    assert.equal((await c.drover(['image', 'get', 'tiny-disk:1.0'])).code, 0);
    assert.equal((await c.drover(['image', 'delete', '22222222-0000-4000-8000-000000000001'])).code, 0, 'a malformed record can be deleted');
  });

  it('refuses to delete an image any VM names, by name or name:version', async () => {
    await c.putVm({ uuid: '11111111-0000-4000-8000-000000000001', name: 'web-1', host: 'hv1', status: 'STOP', spec: { memory: 64, disks: [{ image: 'tiny-disk' }] } });
    const res = await c.drover(['image', 'delete', 'tiny-disk:1.0']);
    assert.equal(res.code, 1);
    assert.equal(res.stderr, 'drover: Image tiny-disk:1.0 is used by VM web-1; delete those VMs first.\n');
    const after = JSON.parse((await c.drover(['image', 'get', 'tiny-disk:1.0'])).stdout) as ImageRecord;
    assert.equal(after.state, 'active', 'the refused delete put the image back as it was');
  });

  it('a deleting image (claimed by image delete) is refused by vm create and makes an agent\'s start wait; an interrupted delete can be run again', async () => {
    const images = new ImageRepository(c.kv, c.keys);
    const stored = (await images.list()).find((i) => i.parsed.ok && i.parsed.value.name === 'tiny-disk');
    assert.ok(stored);
    // What a delete leaves between its claim and its VM search (or when it was killed there).
    assert.ok(await images.replace(stored, { ...(JSON.parse(stored.raw) as object), state: 'deleting' }));

    for (const image of ['tiny-disk', 'tiny-disk:1.0', stored.uuid]) {
      const vm = { name: 'late', host: 'hv1', spec: { memory: 64, disks: [{ image }] } };
      const res = await c.drover(['vm', 'create', '-f', '-'], { stdin: JSON.stringify(vm) });
      assert.equal(res.code, 1, image);
      assert.equal(res.stderr, 'drover: Image tiny-disk:1.0 is being deleted (drover image delete), so no new VM may use it.\n');
    }

    const state = await mkdtemp(join(dir, 'state-'));
    const preparer = createAgentDiskPreparer({ kv: c.kv, keys: c.keys, stateRoot: state, vmsDir: join(state, 'vms'), credentials: () => undefined, downloadAttempts: 1, logger: silentLogger() });
    await assert.rejects(
      preparer.prepare('33333333-0000-4000-8000-000000000001', { vcpus: 1, memory: 64, vnc: 'none', restart: 'never', disks: [{ image: 'tiny-disk' }] }),
      (e: unknown) => e instanceof DroverError && e.retryable && e.message === 'Image tiny-disk:1.0 is being deleted (drover image delete); the start waits to see whether the delete goes through.',
    );
    assert.deepEqual(await readdir(state).catch(() => []), ['vms'], 'nothing was fetched');

    // The VM that blocked it goes; the delete is run again and completes.
    await c.kv.delete(c.keys.vm('11111111-0000-4000-8000-000000000001'));
    const res = await c.drover(['image', 'delete', 'tiny-disk:1.0']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await c.drover(['image', 'get', stored.uuid])).code, 1);
  });
});
