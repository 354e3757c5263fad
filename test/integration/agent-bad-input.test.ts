/**
 * Bad input in etcd gets ERROR with one clear sentence, and the agent keeps
 * serving the other VMs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { access } from 'node:fs/promises';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { startCluster, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';

describe('agent and bad input (real etcd, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let agent: AgentProcess;

  before(async () => {
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1');
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  async function expectError(uuid: string, pattern: RegExp): Promise<Record<string, unknown>> {
    const vm = await cluster.waitForStatus(uuid, 'ERROR', 30_000);
    assert.match(String(vm.error), pattern);
    assert.doesNotMatch(String(vm.error), /\n/, 'one sentence');
    return vm;
  }

  it('malformed JSON: ERROR, and the original text is kept', async () => {
    const uuid = randomUUID();
    const text = '{"name": "broken", "host": "hv1", ';
    await cluster.kv.put(cluster.keys.vm(uuid), text);
    const vm = await expectError(uuid, /not valid JSON/);
    assert.equal(vm.raw, text);
  });

  it('wrong types: ERROR naming the field', async () => {
    const uuid = await cluster.createVm({ name: 'typo', spec: { memory: 'lots' } });
    await expectError(uuid, /spec\.memory/);
  });

  it('a hostile name: ERROR, nothing started, no shell involved', async () => {
    const uuid = await cluster.createVm({ name: '"; rm -rf /' });
    await expectError(uuid, /Field name is invalid/);
    await assert.rejects(access(`${agent.stateDir}/vms/${uuid}`));
  });

  it('a path with "..": ERROR', async () => {
    const uuid = await cluster.createVm({ name: 'dots', spec: { boot: { kernel: '/boot/../etc/passwd' } } });
    await expectError(uuid, /spec\.boot\.kernel/);
  });

  it('a missing kernel: ERROR naming the path', async () => {
    const uuid = await cluster.createVm({ name: 'nokernel', spec: { boot: { kernel: '/nonexistent/vmlinuz' } } });
    await expectError(uuid, /\/nonexistent\/vmlinuz/);
  });

  it('qemu refusing to start: ERROR with qemu\'s own message', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const garbage = join(cluster.dir, 'garbage-kernel');
    await writeFile(garbage, Buffer.alloc(8192, 0x5a));
    const uuid = await cluster.createVm({ name: 'garbage', spec: { boot: { kernel: garbage } } });
    await expectError(uuid, /invalid kernel header/);
  });

  it('a key whose last segment is not a uuid: ERROR', async () => {
    const key = cluster.keys.vm('not-a-uuid');
    await cluster.kv.put(key, JSON.stringify({ uuid: 'not-a-uuid', name: 'odd', host: 'hv1', spec: { memory: 64, boot: { kernel: '/k' } } }));
    const entry = await (async () => {
      for (let i = 0; i < 300; i++) {
        const e = await cluster.kv.get(key);
        if (e && JSON.parse(e.raw).status === 'ERROR') return JSON.parse(e.raw) as { error: string };
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no ERROR');
    })();
    assert.match(entry.error, /not a lower-case UUID/);
  });

  it('keeps serving: a valid VM written after all that runs', async () => {
    const uuid = await cluster.createVm({ name: 'fine' });
    await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    assert.equal(agent.child.exitCode, null);
  });
});
