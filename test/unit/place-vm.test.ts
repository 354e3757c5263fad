import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { placeVm, type HostCapacity, type PlacementPolicy } from '../../src/scheduler/place-vm.js';

const host = (name: string, fields: Partial<HostCapacity> = {}): HostCapacity => ({
  name, alive: true, drained: false, cpus: 4, memory: 8192, reservedMemory: 512, usedMemory: 0, usedVcpus: 0, vms: 0, ...fields,
});
const spread: PlacementPolicy = { strategy: 'spread', overheadMiB: 64, cpuOvercommit: 2 };
const pack: PlacementPolicy = { ...spread, strategy: 'pack' };
const vm = { memory: 1024, vcpus: 1 };

describe('placeVm', () => {
  const hosts = [host('a', { usedMemory: 4000 }), host('b', { usedMemory: 1000 }), host('c', { usedMemory: 6000 })];

  it('spread picks the host with the most free memory, pack the least that fits', () => {
    assert.deepEqual(placeVm(vm, hosts, spread), { ok: true, host: 'b' });
    assert.deepEqual(placeVm(vm, hosts, pack), { ok: true, host: 'c' });
  });

  it('counts reserved memory and the per-VM overhead', () => {
    // c has 8192 − 512 − 6000 = 1680 free; 1024 + 64 fits, 1600 + 64 + 64 does not.
    assert.deepEqual(placeVm({ memory: 1600, vcpus: 1 }, [hosts[2]!], spread).ok, true);
    assert.deepEqual(placeVm({ memory: 1617, vcpus: 1 }, [hosts[2]!], spread).ok, false);
  });

  it('respects spec.nodes and prefers spec.autostart_node when it fits', () => {
    assert.deepEqual(placeVm({ ...vm, nodes: ['a', 'c'] }, hosts, spread), { ok: true, host: 'a' });
    assert.deepEqual(placeVm({ ...vm, autostartNode: 'c' }, hosts, spread), { ok: true, host: 'c' });
    assert.deepEqual(placeVm({ ...vm, nodes: ['a'], autostartNode: 'c' }, hosts, spread), { ok: true, host: 'a' });
  });

  it('skips dead and drained hosts, and hosts out of vCPUs', () => {
    const h = [host('a', { alive: false }), host('b', { drained: true }), host('c', { usedVcpus: 8 }), host('d')];
    assert.deepEqual(placeVm(vm, h, spread), { ok: true, host: 'd' });
  });

  it('says why nothing fits, per reason', () => {
    const h = [host('a', { alive: false }), host('b', { drained: true }), host('c', { usedVcpus: 8 }), host('d', { usedMemory: 7600 }), host('e')];
    const r = placeVm({ ...vm, nodes: ['a', 'b', 'c', 'd'] }, h, spread);
    assert.deepEqual(r, { ok: false, reason: 'No host fits this VM: of 5 hosts, 1 not in spec.nodes, 1 dead, 1 drained, 1 without 1088 MiB free, 1 without room for 1 more vCPU.' });
    assert.deepEqual(placeVm(vm, [], spread), { ok: false, reason: 'No host has registered yet.' });
  });

  it('breaks ties by fewer VMs, then by name, so the choice is stable', () => {
    assert.equal((placeVm(vm, [host('b'), host('a')], spread) as { host: string }).host, 'a');
    assert.equal((placeVm(vm, [host('a', { vms: 3 }), host('b', { vms: 1 })], spread) as { host: string }).host, 'b');
  });
});
