import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { findForeignVms } from '../../src/agent/find-foreign.js';
import type { DiscoveredVm } from '../../src/hypervisor/hypervisor.js';

const U1 = '11111111-1111-4111-8111-111111111111';
const U2 = '22222222-2222-4222-8222-222222222222';
const proc = (pid: number, fields: Partial<DiscoveredVm>): DiscoveredVm => ({ pid, argv: ['qemu-system-x86_64'], managed: false, ...fields });

describe('findForeignVms', () => {
  const processes = [
    proc(1, { uuid: U1, managed: true, argv: ['qemu', '/state/vms/x'] }),
    proc(2, { uuid: U2, name: 'handmade', argv: ['qemu', '/elsewhere'] }),
    proc(3, { uuid: U1, argv: ['qemu', '/state/copy'] }),
    proc(4, { argv: ['qemu', '/state/anon'] }),
  ];

  it('with scope all: everything unmanaged, designated or not', () => {
    const found = findForeignVms(processes, (u) => u === U1, { kind: 'all' });
    assert.deepEqual(found.map((f) => f.vm.pid), [2, 3, 4]);
    assert.match(found[0]!.why, /handmade \(pid 2\) with uuid 2222.* no record designates it here/);
    assert.match(found[1]!.why, /designated to this host, but drover does not manage that process/);
    assert.match(found[2]!.why, /^qemu pid 4 runs on this host/);
  });

  it('reports drover\'s own VM once its record no longer designates this host', () => {
    const found = findForeignVms(processes, () => false, { kind: 'all' });
    assert.deepEqual(found.map((f) => f.vm.pid), [1, 2, 3, 4]);
    assert.match(found[0]!.why, /no record designates it to this host any more/);
  });

  it('with scope state-dir: only processes that mention the state dir', () => {
    const found = findForeignVms(processes, (u) => u === U1, { kind: 'state-dir', stateDir: '/state' });
    assert.deepEqual(found.map((f) => f.vm.pid), [3, 4]);
  });
});
