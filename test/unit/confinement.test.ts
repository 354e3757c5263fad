/**
 * The pure parts of confinement (docs/security.md): the host path syntax
 * and allow-list rules, the argv of a confined qemu (sandbox, fdsets with
 * explicit backing chains, kernel descriptors, VNC auth), cgroup limits.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError } from '../../src/lib/errors.js';
import { buildQemuArgs, SANDBOX_ARG, type BuildQemuArgsInput } from '../../src/hypervisor/qemu/build-qemu-args.js';
import { checkPathSyntax, isUnder } from '../../src/hypervisor/qemu/host-paths.js';
import { inUserTerms } from '../../src/hypervisor/qemu/host-files.js';
import { cgroupCpuMax, cgroupMemoryMax, findCgroup2Mount } from '../../src/hypervisor/qemu/vm-cgroup.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const PATHS = { qmpSocket: '/run/d/qmp.sock', vncSocket: '/run/d/vnc.sock', serialSocket: '/run/d/serial.sock', serialLog: '/run/d/serial.log' };
const spec = (o: Partial<VmSpec> = {}): VmSpec => ({ vcpus: 2, memory: 256, boot: { kernel: '/k/vmlinuz' }, vnc: 'unix', restart: 'always', ...o });
const build = (o: Partial<BuildQemuArgsInput> = {}): string[] => buildQemuArgs({ uuid: UUID, name: 'web-1', spec: spec(), paths: PATHS, accel: 'tcg', ...o });
const values = (argv: string[], flag: string): string[] => argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? '<missing>'] : []));

describe('host path syntax and allow-list', () => {
  const allowed = ['/srv/vms', '/var/lib/drover/images'];
  const refused: Array<[string, RegExp]> = [
    ['relative/disk.img', /is not absolute/],
    ['/srv/vms/../../etc/shadow', /contains a "\.\." segment/],
    ['/srv/vms/a,file=x.img', /contains a comma/],
    ['/srv/vms/with space.img', /contains a space/],
    ['/srv/vms/line\nbreak.img', /contains the character U\+000A/],
    ['/srv/vms/key=value.img', /contains the character U\+003D/],
    ['/srv/vms/nbd:host.img', /contains the character U\+003A/],
    ['/srv/vms/caf\u00e9.img', /contains the character U\+00E9/],
    ['/etc/shadow', /is outside this host's allowed_paths \(\/srv\/vms, \/var\/lib\/drover\/images\)/],
    ['/srv/vmsX/disk.img', /outside/],
  ];
  for (const [path, why] of refused) {
    it(`refuses ${JSON.stringify(path)}`, () => {
      assert.throws(() => checkPathSyntax('disk 1', path, allowed), (e: unknown) => {
        assert.ok(e instanceof DroverError);
        assert.equal(e.code, 'INVALID_SPEC');
        assert.equal(e.retryable, false);
        assert.match(e.message, why);
        assert.ok(e.message.startsWith(`The disk 1 path ${JSON.stringify(path)} `));
        return true;
      });
    });
  }
  it('accepts a plain path under an allowed dir, and the dir itself', () => {
    checkPathSyntax('kernel', '/srv/vms/kernels/vmlinuz-6.1.0+deb_12@x~1', allowed);
    assert.ok(isUnder('/srv/vms', '/srv/vms'));
    assert.ok(!isUnder('/srv/vms2/x', '/srv/vms'));
  });
});

describe('a confined qemu\'s argv', () => {
  it('always runs under the seccomp sandbox', () => {
    assert.deepEqual(values(build(), '-sandbox'), [SANDBOX_ARG]);
    assert.equal(SANDBOX_ARG, 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  });

  it('boots the kernel and initrd from inherited descriptors', () => {
    const argv = build({ spec: spec({ boot: { kernel: '/k/vmlinuz', initrd: '/k/initrd' } }), files: { kernel: '/proc/self/fd/3', initrd: '/proc/self/fd/4', disks: [] } });
    assert.deepEqual(values(argv, '-kernel'), ['/proc/self/fd/3']);
    assert.deepEqual(values(argv, '-initrd'), ['/proc/self/fd/4']);
    assert.ok(!argv.some((a) => a.includes('/k/')));
  });

  it('opens disks through fdsets and names every backing node, null at the end', () => {
    const argv = build({
      spec: spec({ disks: [{ path: '/srv/vms/top.qcow2' }, { path: '/srv/vms/data.raw' }] }),
      files: {
        disks: [
          { chain: [{ fds: [3, 4], format: 'qcow2' }, { fds: [5], format: 'qcow2' }] },
          { chain: [{ fds: [6, 7], format: 'raw' }] },
        ],
      },
    });
    assert.deepEqual(values(argv, '-add-fd'), ['fd=3,set=1', 'fd=4,set=1', 'fd=5,set=2', 'fd=6,set=17', 'fd=7,set=17']);
    assert.deepEqual(values(argv, '-blockdev').map((b) => JSON.parse(b) as unknown), [
      { driver: 'file', 'node-name': 'disk0-b1-file', filename: '/dev/fdset/2', 'read-only': true },
      { driver: 'qcow2', 'node-name': 'disk0-b1', file: 'disk0-b1-file', 'read-only': true, backing: null },
      { driver: 'file', 'node-name': 'disk0-file', filename: '/dev/fdset/1' },
      { driver: 'qcow2', 'node-name': 'disk0', file: 'disk0-file', backing: 'disk0-b1' },
      { driver: 'file', 'node-name': 'disk1-file', filename: '/dev/fdset/17' },
      { driver: 'raw', 'node-name': 'disk1', file: 'disk1-file' },
    ]);
    assert.ok(!argv.some((a) => a.includes('/srv/vms')), 'no host path on the command line');
  });

  it('asks for a VNC password and TLS when the host has them', () => {
    const argv = build({ spec: spec({ vnc: 'tcp' }), vncPassword: true, vncTlsDir: '/etc/drover/vnc' });
    assert.deepEqual(values(argv, '-vnc'), ['127.0.0.1:0,to=99,tls-creds=vnctls,password=on']);
    assert.deepEqual(values(argv, '-object'), ['tls-creds-x509,id=vnctls,dir=/etc/drover/vnc,endpoint=server,verify-peer=off']);
  });

  it('puts qemu\'s messages back in the record\'s terms', () => {
    const names: Array<[string, string]> = [['/dev/fdset/1', '/srv/a.img'], ['/dev/fdset/17', '/srv/b.img'], ['/proc/self/fd/3', '/k/vmlinuz']];
    assert.equal(
      inUserTerms('Failed to get "write" lock. Is another process using the image [/dev/fdset/17]? (/dev/fdset/1, /proc/self/fd/3)', names),
      'Failed to get "write" lock. Is another process using the image [/srv/b.img]? (/srv/a.img, /k/vmlinuz)',
    );
  });
});

describe('cgroup limits', () => {
  it('memory.max is spec.memory plus 256 MiB plus an eighth; cpu.max is vcpus whole CPUs', () => {
    assert.equal(cgroupMemoryMax(1024), (1024 + 256 + 128) * 1024 * 1024);
    assert.equal(cgroupCpuMax(1), '100000 100000');
    assert.equal(cgroupCpuMax(4), '400000 100000');
  });
  it('finds the cgroup2 mount in a mounts table, or none', () => {
    assert.equal(findCgroup2Mount('tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n'), '/sys/fs/cgroup/unified');
    assert.equal(findCgroup2Mount('cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n'), null);
  });
});
