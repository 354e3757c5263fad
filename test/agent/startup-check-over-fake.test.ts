/**
 * The agent's start-up check over the fake hypervisor and a real etcd: by
 * the time `start()` resolves, a qemu no record designates here has been
 * reported, with a resync_interval far longer than the test, while the VMs
 * the agent adopted, the one it is about to start and the one arriving by a
 * live migration are not taken for foreign ones. (foreign_vms = "stop"
 * signals the real pid, so it is tested with real qemu in
 * test/integration/agent-startup-check.test.ts, not here.)
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { openStateDir } from '../../src/agent/state-dir.js';
import { mergeConfigLayers } from '../../src/config/load-config.js';
import { keySpace } from '../../src/contract/keys.js';
import { FakeHypervisor } from '../../src/hypervisor/fake/fake-hypervisor.js';
import { FakeWorld } from '../../src/hypervisor/fake/fake-world.js';
import { silentLogger } from '../../src/lib/logger.js';
import { EventLog } from '../../src/store/event-log.js';
import { KvStore } from '../../src/store/kv-store.js';
import { rawObject, VmRepository } from '../../src/store/vm-repository.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { waitUntil } from '../helpers/agent-harness.js';

describe('agent start-up check over the fake hypervisor (real etcd)', () => {
  let etcd: TestEtcd;
  let dir: string;
  const agents: Agent[] = [];

  before(async () => {
    etcd = await startTestEtcd();
    dir = await mkdtemp(join(tmpdir(), 'drover-agent-startup-'));
  });
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.stop();
  });
  after(async () => {
    await etcd.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** An agent on `world` whose periodic resync would come only after 10 minutes. */
  async function setup(world: FakeWorld, prefix: string, stateName: string, name = 'hv1') {
    const config = mergeConfigLayers([
      { source: 'test', values: { name, etcd: [etcd.endpoint], state_dir: join(dir, stateName), prefix, resync_interval: 600, heartbeat_interval: 1, log_level: 'silent' } },
    ]);
    const agent = new Agent({ config, client: etcd.client, hypervisor: new FakeHypervisor({ world }), stateDir: await openStateDir(config.state_dir), logger: silentLogger(), version: 'test' });
    agents.push(agent);
    const kv = new KvStore(etcd.client);
    return { agent, repo: new VmRepository(kv, keySpace(prefix)), events: new EventLog(kv, keySpace(prefix)) };
  }

  const create = async (repo: VmRepository, host = 'hv1'): Promise<string> => {
    const uuid = randomUUID();
    await repo.create(uuid, { uuid, name: `vm-${uuid.slice(0, 8)}`, host, spec: { memory: 64, boot: { kernel: '/k' } } });
    return uuid;
  };
  const runningIn = (repo: VmRepository, uuid: string) =>
    waitUntil(async () => (rawObject((await repo.get(uuid))?.raw ?? 'null')?.status === 'RUNNING' ? true : undefined), 10_000, `${uuid} to run`);

  it('reports a qemu started by hand before start() resolves, and none of the VMs drover runs or is about to run', async () => {
    const world = new FakeWorld();
    const prefix = etcd.newPrefix();
    const stateName = randomUUID();
    const first = await setup(world, prefix, stateName);
    await first.agent.start();
    const adopted = await create(first.repo);
    await runningIn(first.repo, adopted);
    await first.agent.stop();

    // While no agent runs: a qemu started by hand, and a new VM for this host.
    const handmade = randomUUID();
    const foreign = world.spawnForeign({ uuid: handmade, name: 'handmade' });
    const fresh = await create(first.repo);

    const second = await setup(world, prefix, stateName);
    await second.agent.start();
    const reports = (await second.events.list()).filter((e) => e.event === 'vm.foreign');
    assert.deepEqual(reports.map((e) => e.vm), [handmade], 'the hand-made qemu, reported during start()');
    assert.equal(reports[0]?.level, 'warn');
    assert.match(reports[0]?.message ?? '', new RegExp(`qemu handmade \\(pid ${foreign.pid}\\) with uuid ${handmade} runs on this host but no record designates it here\\. Leaving it running`));
    assert.ok(world.isAlive(foreign.pid), 'foreign_vms = report leaves it running');

    // The new VM starts; a later periodic check does not report the hand-made qemu again.
    await runningIn(second.repo, fresh);
    await second.agent.resync('test');
    assert.equal((await second.events.list()).filter((e) => e.event === 'vm.foreign').length, 1);
  });

  it('reports at start-up a VM of its own whose record was deleted while no agent ran', async () => {
    const world = new FakeWorld();
    const prefix = etcd.newPrefix();
    const stateName = randomUUID();
    const first = await setup(world, prefix, stateName);
    await first.agent.start();
    const orphan = await create(first.repo);
    await runningIn(first.repo, orphan);
    await first.agent.stop();
    await first.repo.update(orphan, () => 'delete');

    const second = await setup(world, prefix, stateName);
    await second.agent.start();
    const reports = (await second.events.list()).filter((e) => e.event === 'vm.foreign');
    assert.deepEqual(reports.map((e) => e.vm), [orphan]);
    assert.match(reports[0]?.message ?? '', /runs VM .* for drover, but no record designates it to this host any more \(deleted or moved\)\./);
  });

  it('does not report the qemu waiting for a live migration into this host when its agent restarts', async () => {
    const hv1World = new FakeWorld();
    const hv2World = new FakeWorld();
    const prefix = etcd.newPrefix();
    const hv2State = randomUUID();
    const hv1 = await setup(hv1World, prefix, randomUUID(), 'hv1');
    const hv2 = await setup(hv2World, prefix, hv2State, 'hv2');
    await hv1.agent.start();
    await hv2.agent.start();
    const uuid = await create(hv1.repo);
    await runningIn(hv1.repo, uuid);
    // hv1 is gone before it can drive the migration: hv2's qemu waits for the stream.
    await hv1.agent.stop();
    await hv1.repo.update(uuid, (cur) => ({ ...(rawObject(cur.raw) ?? {}), status: 'MIGRATING', migration: { target: 'hv2', source: 'hv1', state: 'requested' } }));
    await waitUntil(async () => (hv2World.findLive(uuid)?.state === 'incoming' ? true : undefined), 10_000, "hv2's incoming qemu");
    await hv2.agent.stop();

    const again = await setup(hv2World, prefix, hv2State, 'hv2');
    await again.agent.start();
    assert.deepEqual((await again.events.list()).filter((e) => e.event === 'vm.foreign'), []);
    assert.equal(hv2World.findLive(uuid)?.state, 'incoming', 'the adopted incoming qemu is left alone');
  });
});
