/**
 * FakeHypervisor passes the same contract as QemuHypervisor, then its own
 * controls are checked (what agent tests lean on).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError } from '../../src/lib/errors.js';
import { FakeHypervisor } from '../../src/hypervisor/fake/fake-hypervisor.js';
import { FakeWorld } from '../../src/hypervisor/fake/fake-world.js';
import type { VmExit, VmHandle } from '../../src/hypervisor/hypervisor.js';
import { runHypervisorContract, type HypervisorHarness } from './hypervisor.contract.js';

const KERNEL = '/srv/fake/vmlinuz';

function fakeSpec(overrides: Partial<VmSpec> = {}): VmSpec {
  return { vcpus: 1, memory: 96, boot: { kernel: KERNEL, cmdline: 'console=ttyS0' }, vnc: 'unix', restart: 'always', ...overrides };
}

async function makeFakeHarness(): Promise<HypervisorHarness> {
  const world = new FakeWorld();
  const hv = new FakeHypervisor({ world });
  return {
    hv,
    timeouts: { boot: 1000, exit: 1000 },
    newInstance: () => new FakeHypervisor({ world }),
    otherHost: () => new FakeHypervisor({ world: new FakeWorld() }),
    deadMigrationUri: 'fake://nowhere/x',
    diskSpec: async (uuid, formats) => {
      const disks = formats.map((format, i) => {
        const path = `/srv/fake/${uuid}-disk${i}.${format}`;
        world.setDiskFormat(path, format);
        return { path };
      });
      world.setGuestBehaviour(uuid, 'idle');
      return fakeSpec({ disks });
    },
    writerSpec: async (uuid) => {
      world.setGuestBehaviour(uuid, 'disk-writer');
      return fakeSpec({ disks: [{ path: `/srv/fake/${uuid}-data.raw` }] });
    },
    spec: (uuid, kind = 'idle') => {
      world.setGuestBehaviour(uuid, kind);
      return fakeSpec();
    },
    missingKernelSpec: () => {
      const path = '/srv/fake/missing-vmlinuz';
      world.markMissing(path);
      return { spec: fakeSpec({ boot: { kernel: path } }), path };
    },
    arrangeStartFailure: async () => {
      world.failNextStart('qemu: invalid kernel header');
      return { spec: fakeSpec(), message: /^qemu: invalid kernel header$/ };
    },
    waitBooted: async (handle) => {
      assert.ok(world.serial.get(handle.uuid)?.includes('DROVER-GUEST-READY'));
    },
    controlSocketExists: async (handle) => world.runDirs.has(handle.uuid) && world.isAlive(handle.pid),
    runDirExists: async (uuid) => world.runDirs.has(uuid),
    isAlive: async (pid) => world.isAlive(pid),
    killHard: async (handle) => world.kill(handle.pid),
    corruptSavedHandle: async (uuid) => {
      const saved = world.saved.get(uuid);
      assert.ok(saved);
      saved.startTime += 1;
    },
    startForeign: async () => {
      const uuid = randomUUID();
      const proc = world.spawnForeign({ uuid, name: 'foreign,vm' });
      return { pid: proc.pid, uuid, name: 'foreign,vm', stop: async () => world.kill(proc.pid) };
    },
    close: async () => {
      for (const p of [...world.processes.values()]) world.kill(p.pid);
    },
  };
}

runHypervisorContract('fake', makeFakeHarness);

describe('FakeHypervisor controls', () => {
  const start = (hv: FakeHypervisor, uuid = randomUUID()): Promise<VmHandle> =>
    hv.start({ uuid, name: 'vm', spec: fakeSpec() });

  function exits(hv: FakeHypervisor): VmExit[] {
    const list: VmExit[] = [];
    hv.onExit((e) => list.push(e));
    return list;
  }

  it('crash() and guestPowerOff() end a VM with the matching reason', async () => {
    const hv = new FakeHypervisor();
    const seen = exits(hv);
    const a = await start(hv);
    const b = await start(hv);
    hv.crash(a.uuid);
    hv.world.guestPowerOff(b.uuid);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(seen.map((e) => [e.uuid, e.reason, e.detail]), [
      [a.uuid, 'crash', 'qemu was killed by SIGKILL.'],
      [b.uuid, 'guest-poweroff', 'The guest powered off.'],
    ]);
  });

  it('failNextStart() fails exactly one start, terminally', async () => {
    const hv = new FakeHypervisor();
    hv.failNextStart('qemu: boom');
    await assert.rejects(start(hv), (e: unknown) => e instanceof DroverError && e.code === 'START_FAILED' && !e.retryable && e.message === 'qemu: boom');
    const ok = await start(hv);
    assert.equal(hv.inspect(ok.uuid).state, 'running');
  });

  it('startDelayMs delays when start resolves, not onSpawned', async () => {
    const world = new FakeWorld();
    world.startDelayMs = 50;
    const hv = new FakeHypervisor({ world });
    const uuid = randomUUID();
    let spawnedAt = 0;
    const began = Date.now();
    const running = hv.start({ uuid, name: 'vm', spec: fakeSpec() }, { onSpawned: () => (spawnedAt = Date.now()) });
    assert.ok(spawnedAt > 0 && spawnedAt - began < 40, 'onSpawned comes first');
    await running;
    assert.ok(Date.now() - began >= 45);
  });

  it('rejects image disks with the terminal sentence the qemu hypervisor uses', async () => {
    const hv = new FakeHypervisor();
    await assert.rejects(
      hv.start({ uuid: randomUUID(), name: 'vm', spec: fakeSpec({ disks: [{ image: 'debian-12' }] }) }),
      { code: 'INVALID_SPEC', message: 'Disk 1 uses image debian-12, which must be prepared as an overlay file before the hypervisor starts the VM.' },
    );
  });
});
