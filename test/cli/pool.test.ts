import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines, stdoutJson, vmRecord, type Cluster } from './helpers.js';

const batch = { name: 'batch', template: { owner: 'ops', spec: { memory: 256, boot: { kernel: '/k' } } }, target_share: 0.5, x_team: 'hep' };

async function getPool(c: Cluster, name: string): Promise<Record<string, unknown> | null> {
  const e = await c.kv.get(c.keys.pool(name));
  return e ? (JSON.parse(e.raw) as Record<string, unknown>) : null;
}

describe('drover pool (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  let dir: string;
  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'drover-cli-pool-'));
  });
  after(async () => {
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('create writes the record with its defaults explicit and unknown fields kept; a second create is refused', async () => {
    const c = cluster(etcd);
    const file = join(dir, 'batch.json');
    await writeFile(file, JSON.stringify({ ...batch, status: { target: 99 } }));
    const res = await c.drover(['pool', 'create', '-f', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'Pool batch created.\n');
    assert.deepEqual(await getPool(c, 'batch'), {
      ...batch,
      template: { owner: 'ops', spec: { memory: 256, boot: { kernel: '/k' }, vcpus: 1, vnc: 'unix', restart: 'on-failure' } },
      fizzle_seconds: 600,
      backoff_seconds: 600,
    }, 'status is the scheduler\'s: not taken from the input');
    const again = await c.drover(['pool', 'create', '-f', file]);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'drover: A pool named batch exists; use --replace to change it.\n');
  });

  it('create --replace changes the spec and keeps the scheduler\'s status', async () => {
    const c = cluster(etcd);
    await c.kv.put(c.keys.pool('batch'), JSON.stringify({ ...batch, fizzle_seconds: 600, backoff_seconds: 600, status: { target: 3, backoff_until: '2030-01-01T00:00:00.000Z' } }));
    const res = await c.drover(['pool', 'create', '-f', '-', '--replace', '--json'], { stdin: JSON.stringify({ ...batch, target_share: undefined, count: 5 }) });
    const printed = stdoutJson<Record<string, unknown>>(res);
    assert.equal(printed.count, 5);
    assert.equal(printed.target_share, undefined);
    assert.deepEqual(printed.status, { target: 3, backoff_until: '2030-01-01T00:00:00.000Z' });
    assert.deepEqual(await getPool(c, 'batch'), printed);
  });

  it('create rejects an invalid record in one sentence naming the field, and writes nothing', async () => {
    const c = cluster(etcd);
    const cases: [unknown, RegExp][] = [
      [{ ...batch, count: 2 }, /^drover: Field target_share is invalid: a pool needs exactly one of "target_share" or "count"\.\n$/],
      [{ ...batch, template: { spec: { memory: 256 } } }, /^drover: Field template\.spec is invalid: a VM needs "boot" or at least one disk\.\n$/],
      [{ ...batch, name: 'Batch' }, /^drover: Field name is invalid: must match/],
      [[batch], /^drover: The pool record must be a JSON object\.\n$/],
    ];
    for (const [input, want] of cases) {
      const res = await c.drover(['pool', 'create', '-f', '-'], { stdin: JSON.stringify(input) });
      assert.equal(res.code, 1, JSON.stringify(input));
      assert.equal(res.stdout, '');
      assert.match(res.stderr, want);
    }
    assert.equal(await c.kv.count(c.keys.poolPrefix), 0);
  });

  it('list shows size, target, running and total VMs, an active backoff and errors; --json the same as objects', async () => {
    const c = cluster(etcd);
    await c.kv.put(c.keys.pool('batch'), JSON.stringify({ ...batch, status: { target: 4, backoff_until: '2999-01-01T00:00:00.000Z' } }));
    await c.kv.put(c.keys.pool('fixed'), JSON.stringify({ ...batch, name: 'fixed', target_share: undefined, count: 2, status: { target: 2, backoff_until: '2000-01-01T00:00:00.000Z' } }));
    await c.kv.put(c.keys.pool('broken'), '{"name": "broken"');
    for (const [pool, status] of [['batch', 'RUNNING'], ['batch', 'RUNNING'], ['batch', 'STOP'], ['fixed', 'SCHEDULED']]) {
      await c.putVm(vmRecord(randomUUID(), `${pool}-${randomUUID().slice(0, 8)}`, { pool, status }));
    }
    await c.putVm(vmRecord(randomUUID(), 'plain'));
    const res = await c.drover(['pool', 'list']);
    assert.equal(res.code, 0, res.stderr);
    const out = lines(res.stdout);
    assert.match(out[0]!, /^NAME +SIZE +TARGET +RUNNING +VMS +BACKOFF_UNTIL +ERROR$/);
    assert.match(out[1]!, /^batch +50% +4 +2 +3 +2999-01-01T00:00:00\.000Z +-$/);
    assert.match(out[2]!, /^broken +- +- +0 +0 +- +The pool record is not valid JSON/);
    assert.match(out[3]!, /^fixed +2 +2 +0 +1 +- +-$/, 'a backoff in the past is not shown');
    const json = stdoutJson<Record<string, unknown>[]>(await c.drover(['pool', 'list', '--json']));
    assert.deepEqual(json[0], { name: 'batch', count: null, target_share: 0.5, target: 4, running: 2, vms: 3, backoff_until: '2999-01-01T00:00:00.000Z', error: null });
    assert.equal(lines((await c.drover(['pool', 'list', '-H'])).stdout).length, 3);
  });

  it('get prints the record; an unknown name exits 1 with one sentence', async () => {
    const c = cluster(etcd);
    await c.kv.put(c.keys.pool('batch'), JSON.stringify(batch));
    assert.deepEqual(stdoutJson(await c.drover(['pool', 'get', 'batch'])), batch);
    const missing = await c.drover(['pool', 'get', 'nosuch']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'drover: No pool is named "nosuch".\n');
  });

  it('delete removes the record and its VMs: placed ones get REQUESTED_DELETE, unplaced ones go at once; others are untouched', async () => {
    const c = cluster(etcd);
    await c.kv.put(c.keys.pool('batch'), JSON.stringify(batch));
    const placed = randomUUID();
    const unplaced = randomUUID();
    const other = randomUUID();
    await c.putVm(vmRecord(placed, 'batch-1', { pool: 'batch' }));
    await c.putVm(vmRecord(unplaced, 'batch-2', { pool: 'batch', host: '', status: 'REQUESTED_NEW' }));
    await c.putVm(vmRecord(other, 'other', { pool: 'other' }));
    const res = await c.drover(['pool', 'delete', 'batch']);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stdout, 'Pool batch deleted; its 2 VMs are being deleted.\n');
    assert.equal(await getPool(c, 'batch'), null);
    const p = await c.getVm(placed);
    assert.equal(p?.status, 'REQUESTED_DELETE');
    assert.match((p?.log as string[]).at(-1)!, / - deleted with pool batch$/);
    assert.equal(await c.getVm(unplaced), null);
    assert.equal((await c.getVm(other))?.status, 'RUNNING');
    const again = await c.drover(['pool', 'delete', 'batch']);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'drover: No pool is named "batch".\n');
  });

  it('delete --keep-vms leaves the VMs as they are', async () => {
    const c = cluster(etcd);
    await c.kv.put(c.keys.pool('batch'), JSON.stringify(batch));
    const uuid = randomUUID();
    await c.putVm(vmRecord(uuid, 'batch-1', { pool: 'batch' }));
    const printed = stdoutJson<Record<string, unknown>>(await c.drover(['pool', 'delete', 'batch', '--keep-vms', '--json']));
    assert.deepEqual(printed, { name: 'batch', deleted: true, vms: [uuid], kept_vms: true });
    assert.equal((await c.getVm(uuid))?.status, 'RUNNING');
  });

  it('usage errors exit 2', async () => {
    const c = cluster(etcd);
    const res = await c.drover(['pool', 'create']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^drover: required option '-f, --file <file>' not specified; see `drover pool create --help`\.\n$/);
    assert.equal((await c.drover(['pool', 'get'])).code, 2);
  });
});
