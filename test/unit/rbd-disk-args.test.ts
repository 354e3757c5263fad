/**
 * rbd disks: the record's `pool/name` becomes qemu's rbd blockdev, with the
 * agent's ceph_conf / ceph_user, and the schema keeps anything that could
 * break out of qemu's option list out of it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { validateVmRecord, type VmSpec } from '../../src/contract/vm-record.js';
import { buildQemuArgs } from '../../src/hypervisor/qemu/build-qemu-args.js';
import { failoverStorageError, migrationStorageError } from '../../src/agent/plan-vm.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const PATHS = { qmpSocket: '/run/d/qmp.sock', vncSocket: '/run/d/vnc.sock', serialSocket: '/run/d/serial.sock', serialLog: '/run/d/serial.log' };

function spec(overrides: Partial<VmSpec> = {}): VmSpec {
  return { vcpus: 1, memory: 128, vnc: 'none', restart: 'always', ...overrides };
}

function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? '<missing>'] : []));
}

describe('rbd disks', () => {
  it('become an rbd blockdev with a raw format layer, first disk bootable without a kernel', () => {
    const argv = buildQemuArgs({ uuid: UUID, name: 'vm', spec: spec({ disks: [{ rbd: 'vms/web-1.root' }, { path: '/d/x.img' }] }), paths: PATHS, accel: 'tcg', detectedFormats: [undefined, 'raw'] });
    assert.deepEqual(values(argv, '-blockdev'), [
      'driver=rbd,node-name=disk0-file,pool=vms,image=web-1.root',
      'driver=raw,node-name=disk0,file=disk0-file',
      'driver=file,node-name=disk1-file,filename=/d/x.img',
      'driver=raw,node-name=disk1,file=disk1-file',
    ]);
    assert.deepEqual(values(argv, '-device'), ['virtio-blk-pci,drive=disk0,id=disk0-dev,bootindex=0', 'virtio-blk-pci,drive=disk1,id=disk1-dev']);
  });

  it('pass ceph_conf and ceph_user (escaped) and a qcow2 format when the spec says so', () => {
    const argv = buildQemuArgs({
      uuid: UUID,
      name: 'vm',
      spec: spec({ boot: { kernel: '/k' }, disks: [{ rbd: 'p/i', format: 'qcow2' }] }),
      paths: PATHS,
      accel: 'tcg',
      ceph: { conf: '/etc/ceph/a,b.conf', user: 'drover' },
    });
    assert.deepEqual(values(argv, '-blockdev'), [
      'driver=rbd,node-name=disk0-file,pool=p,image=i,conf=/etc/ceph/a,,b.conf,user=drover',
      'driver=qcow2,node-name=disk0,file=disk0-file',
    ]);
    assert.deepEqual(values(argv, '-device'), ['virtio-blk-pci,drive=disk0,id=disk0-dev']);
  });

  it('must be pool/name without option separators, and exclusive with image and path', () => {
    const rec = (disk: Record<string, unknown>) => validateVmRecord({ uuid: UUID, name: 'vm', spec: { memory: 64, disks: [disk] } }, UUID);
    assert.equal(rec({ rbd: 'pool/img' }).ok, true);
    for (const bad of ['pool', 'a/b/c', 'p/i,conf=/x', 'p/i:snap', '/i', 'p/']) {
      const r = rec({ rbd: bad });
      assert.ok(!r.ok && /spec\.disks\.0\.rbd is invalid: must be pool\/name/.test(r.error), `${bad}: ${JSON.stringify(r)}`);
    }
    const both = rec({ rbd: 'p/i', path: '/x' });
    assert.ok(!both.ok && /exactly one of "image", "path" or "rbd"/.test(both.error));
  });

  it('count as shared storage for failover and live migration', () => {
    const r = validateVmRecord({ uuid: UUID, name: 'vm', spec: { memory: 64, failover: true, disks: [{ rbd: 'p/i' }] } }, UUID);
    assert.ok(r.ok);
    assert.equal(failoverStorageError(r.value, []), null);
    assert.equal(migrationStorageError(r.value, []), null);
  });
});
