import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines, runDrover, stdoutJson, uuidWith, vmRecord, type Cluster } from './helpers.js';

async function threeVms(c: Cluster): Promise<void> {
  await c.putVm(vmRecord(uuidWith('cccc0000'), 'web-2', { host: 'hv2', status: 'STOP', spec: { memory: 512, vcpus: 2, boot: { kernel: '/k' } } }));
  await c.putVm(vmRecord(uuidWith('aaaa0000'), 'db-1', { runtime: { pid: 4242 } }));
  await c.putVm(vmRecord(uuidWith('bbbb0000'), 'web-1'));
}

describe('drover vm list / get (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('prints an aligned table sorted by name', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    const res = await c.drover(['vm', 'list']);
    assert.equal(res.code, 0, res.stderr);
    const out = lines(res.stdout);
    assert.deepEqual(out[0]?.split(/\s+/), ['UUID', 'NAME', 'HOST', 'STATUS', 'MEMORY', 'VCPUS']);
    assert.deepEqual(out.slice(1).map((l) => l.split(/\s+/)[1]), ['db-1', 'web-1', 'web-2']);
    assert.deepEqual(out[3]?.split(/\s+/), [uuidWith('cccc0000'), 'web-2', 'hv2', 'STOP', '512', '2']);
    // aligned: every row has its NAME column at the same offset
    const at = out[0]?.indexOf('NAME');
    for (const l of out.slice(1)) assert.equal(l.indexOf(' ') + 2, at);
  });

  it('chooses columns with -o (dotted fields), drops the header with -H and filters field=value', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    const res = await c.drover(['vm', 'list', '-H', '-o', 'name,spec.memory,runtime.pid', 'host=hv1']);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(lines(res.stdout).map((l) => l.split(/\s+/)), [['db-1', '256', '4242'], ['web-1', '256', '-']]);
    const two = await c.drover(['vm', 'list', '-H', '-o', 'name', 'status=RUNNING', 'vcpus=1']);
    assert.deepEqual(lines(two.stdout), ['db-1', 'web-1']);
    const none = await c.drover(['vm', 'list', 'status=KILLED']);
    assert.deepEqual(lines(none.stdout), ['UUID  NAME  HOST  STATUS  MEMORY  VCPUS']);
  });

  it('prints a JSON array with --json, optionally only the -o fields', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    const full = stdoutJson<Record<string, unknown>[]>(await c.drover(['vm', 'list', '--json', 'name=web-2']));
    assert.equal(full.length, 1);
    assert.equal(full[0]?.status, 'STOP');
    assert.deepEqual(full[0]?.spec, { memory: 512, vcpus: 2, boot: { kernel: '/k' } });
    const picked = stdoutJson<unknown>(await c.drover(['vm', 'list', '--json', '-o', 'name,memory']));
    assert.deepEqual(picked, [
      { name: 'db-1', memory: 256 },
      { name: 'web-1', memory: 256 },
      { name: 'web-2', memory: 512 },
    ]);
  });

  it('still lists records that fail to parse', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    await c.kv.put(c.keys.vm(uuidWith('dddd0000')), 'not json');
    await c.kv.put(c.keys.vm(uuidWith('eeee0000')), JSON.stringify({ name: 'broken', status: 'WEIRD' }));
    const res = await c.drover(['vm', 'list', '-H', '-o', 'uuid,name,status']);
    assert.equal(res.code, 0, res.stderr);
    const rows = lines(res.stdout).map((l) => l.split(/\s+/));
    assert.deepEqual(rows.find((r) => r[0] === uuidWith('dddd0000')), [uuidWith('dddd0000'), '-', '-']);
    assert.deepEqual(rows.find((r) => r[0] === uuidWith('eeee0000')), [uuidWith('eeee0000'), 'broken', 'WEIRD']);
    assert.equal(rows.length, 5);
  });

  it('rejects a filter without "=" as a usage error', async () => {
    const c = cluster(etcd);
    const res = await c.drover(['vm', 'list', 'RUNNING']);
    assert.equal(res.code, 2);
    assert.equal(res.stderr, 'drover: Filter "RUNNING" must look like field=value, e.g. status=RUNNING.\n');
  });

  it('gets a VM by full uuid, uuid prefix and name, as pretty JSON', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    for (const ref of [uuidWith('bbbb0000'), 'bbbb', 'BBBB0000-00', 'web-1']) {
      const res = await c.drover(['vm', 'get', ref]);
      assert.equal(res.code, 0, `${ref}: ${res.stderr}`);
      assert.equal((JSON.parse(res.stdout) as { name: string }).name, 'web-1');
      assert.match(res.stdout, /^{\n {2}"uuid"/);
    }
  });

  it('refuses an ambiguous prefix, listing the candidates, and an unknown VM', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(uuidWith('abcd1111'), 'one'));
    await c.putVm(vmRecord(uuidWith('abcd2222'), 'two'));
    const amb = await c.drover(['vm', 'get', 'abcd']);
    assert.equal(amb.code, 1);
    assert.equal(lines(amb.stderr).length, 1);
    assert.match(amb.stderr, /^drover: "abcd" matches 2 VMs: /);
    assert.ok(amb.stderr.includes(`one (${uuidWith('abcd1111')})`) && amb.stderr.includes(`two (${uuidWith('abcd2222')})`), amb.stderr);
    const missing = await c.drover(['vm', 'get', 'nothing']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'drover: No VM matches "nothing".\n');
    const short = await c.drover(['vm', 'get', 'abc']);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /at least 4 characters/);
  });

  it('takes etcd and prefix from DROVER_ETCD / DROVER_PREFIX, and a flag beats the environment', async () => {
    const c = cluster(etcd);
    await threeVms(c);
    const fromEnv = await runDrover(['vm', 'list', '-H', '-o', 'name'], { env: { DROVER_ETCD: etcd.endpoint, DROVER_PREFIX: c.prefix } });
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.deepEqual(lines(fromEnv.stdout), ['db-1', 'web-1', 'web-2']);
    // c.drover passes --etcd/--prefix; the (wrong) environment must lose.
    const flags = await c.drover(['vm', 'list', '-H', '-o', 'name'], { env: { DROVER_ETCD: 'http://127.0.0.1:1', DROVER_PREFIX: '/elsewhere' } });
    assert.equal(flags.code, 0, flags.stderr);
    assert.deepEqual(lines(flags.stdout), ['db-1', 'web-1', 'web-2']);
  });
});
