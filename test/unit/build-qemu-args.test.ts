import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError } from '../../src/lib/errors.js';
import {
  bridgeTaps,
  buildQemuArgs,
  defaultMac,
  escapeOptValue,
  tapName,
  type BuildQemuArgsInput,
} from '../../src/hypervisor/qemu/build-qemu-args.js';
import { parseQemuIdentity, parseProcStat, tapsInUse } from '../../src/hypervisor/qemu/proc.js';

const UUID = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
const PATHS = { qmpSocket: '/run/d/qmp.sock', vncSocket: '/run/d/vnc.sock', serialSocket: '/run/d/serial.sock', serialLog: '/run/d/serial.log' };

function spec(overrides: Partial<VmSpec> = {}): VmSpec {
  return { vcpus: 2, memory: 256, boot: { kernel: '/k/vmlinuz' }, vnc: 'unix', restart: 'always', ...overrides };
}

function build(overrides: Partial<BuildQemuArgsInput> = {}): string[] {
  return buildQemuArgs({ uuid: UUID, name: 'web-1', spec: spec(), paths: PATHS, accel: 'tcg', ...overrides });
}

/** The value following each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1] ?? '<missing>'] : []));
}

describe('buildQemuArgs', () => {
  it('builds the fixed part: identity, machine, sizes, no defaults, QMP and serial chardevs', () => {
    const argv = build();
    assert.deepEqual(argv.slice(0, 6), ['-name', 'guest=web-1,debug-threads=on', '-uuid', UUID, '-machine', 'q35,accel=tcg']);
    assert.deepEqual(values(argv, '-smp'), ['2']);
    assert.deepEqual(values(argv, '-m'), ['256']);
    for (const flag of ['-nodefaults', '-no-user-config']) assert.ok(argv.includes(flag), flag);
    assert.deepEqual(values(argv, '-display'), ['none']);
    assert.deepEqual(values(argv, '-chardev'), [
      'socket,id=qmp,path=/run/d/qmp.sock,server=on,wait=off',
      'socket,id=serial0,path=/run/d/serial.sock,server=on,wait=off,logfile=/run/d/serial.log',
    ]);
    assert.deepEqual(values(argv, '-mon'), ['chardev=qmp,mode=control']);
    assert.deepEqual(values(argv, '-serial'), ['chardev:serial0']);
    assert.deepEqual(values(argv, '-cpu'), []);
  });

  const accelCases: Array<[string, Partial<BuildQemuArgsInput>, string, string[]]> = [
    ['tcg on q35', { accel: 'tcg' }, 'q35,accel=tcg', []],
    ['kvm passes the host CPU through', { accel: 'kvm' }, 'q35,accel=kvm', ['host']],
    ['pc machine', { accel: 'tcg', machine: 'pc' }, 'pc,accel=tcg', []],
  ];
  for (const [title, input, machine, cpu] of accelCases) {
    it(`accel: ${title}`, () => {
      const argv = build(input);
      assert.deepEqual(values(argv, '-machine'), [machine]);
      assert.deepEqual(values(argv, '-cpu'), cpu);
    });
  }

  const vncCases: Array<[VmSpec['vnc'], Partial<BuildQemuArgsInput>, string[]]> = [
    ['unix', {}, ['unix:/run/d/vnc.sock']],
    ['tcp', {}, ['127.0.0.1:0,to=99']],
    ['tcp', { vncTcpHost: '10.0.0.5' }, ['10.0.0.5:0,to=99']],
    ['none', {}, []],
  ];
  for (const [vnc, input, expected] of vncCases) {
    it(`vnc ${vnc}${input.vncTcpHost ? ` on ${input.vncTcpHost}` : ''}`, () => {
      assert.deepEqual(values(build({ spec: spec({ vnc }), ...input }), '-vnc'), expected);
    });
  }

  const bootCases: Array<[string, VmSpec['boot'], Record<string, string[]>]> = [
    ['kernel only', { kernel: '/k/vmlinuz' }, { '-kernel': ['/k/vmlinuz'], '-initrd': [], '-append': [] }],
    [
      'kernel, initrd and cmdline, verbatim',
      { kernel: '/k/a,b vmlinuz', initrd: '/k/i,rd', cmdline: 'console=ttyS0 root=/dev/vda,x' },
      { '-kernel': ['/k/a,b vmlinuz'], '-initrd': ['/k/i,rd'], '-append': ['console=ttyS0 root=/dev/vda,x'] },
    ],
  ];
  for (const [title, boot, expected] of bootCases) {
    it(`boot: ${title}`, () => {
      const argv = build({ spec: spec({ boot }) });
      for (const [flag, want] of Object.entries(expected)) assert.deepEqual(values(argv, flag), want, flag);
    });
  }

  it('adds path disks as blockdevs on virtio, with the spec format winning over the detected one', () => {
    const argv = build({
      spec: spec({ disks: [{ path: '/d/a.qcow2', format: 'qcow2' }, { path: '/d/b.img' }] }),
      detectedFormats: ['raw', 'raw'],
    });
    assert.deepEqual(values(argv, '-blockdev'), [
      'driver=file,node-name=disk0-file,filename=/d/a.qcow2',
      'driver=qcow2,node-name=disk0,file=disk0-file',
      'driver=file,node-name=disk1-file,filename=/d/b.img',
      'driver=raw,node-name=disk1,file=disk1-file',
    ]);
    assert.deepEqual(values(argv, '-device'), ['VGA', 'virtio-blk-pci,drive=disk0,id=disk0-dev', 'virtio-blk-pci,drive=disk1,id=disk1-dev']);
  });

  it('boots from the first disk when there is no kernel', () => {
    const argv = build({ spec: spec({ boot: undefined, disks: [{ path: '/d/a.img' }, { path: '/d/b.img' }] }), detectedFormats: ['raw', 'raw'] });
    assert.deepEqual(values(argv, '-device'), [
      'VGA', // the VNC screen
      'virtio-blk-pci,drive=disk0,id=disk0-dev,bootindex=0',
      'virtio-blk-pci,drive=disk1,id=disk1-dev',
    ]);
    assert.deepEqual(values(argv, '-kernel'), []);
  });

  it('refuses image disks with the terminal sentence, and a disk of unknown format', () => {
    assert.throws(
      () => build({ spec: spec({ disks: [{ path: '/d/a.img' }, { image: 'debian-12', size: 4096 }] }), detectedFormats: ['raw'] }),
      (e: unknown) =>
        e instanceof DroverError &&
        e.code === 'INVALID_SPEC' &&
        !e.retryable &&
        e.message === 'Disk 2 uses image debian-12, which must be prepared as an overlay file before the hypervisor starts the VM.',
    );
    assert.throws(() => build({ spec: spec({ disks: [{ path: '/d/a.img' }] }) }), /Disk 1 \(\/d\/a\.img\) has no known format/);
  });

  it('adds user and bridge NICs with stable MACs and tap names', () => {
    const argv = build({
      spec: spec({ nics: [{ network: 'user' }, { network: 'br0', mac: '52:54:00:aa:bb:cc' }, { network: 'br1' }] }),
    });
    assert.deepEqual(values(argv, '-netdev'), [
      'user,id=net0',
      `tap,id=net1,ifname=${tapName(UUID, 1)},script=no,downscript=no`,
      `tap,id=net2,ifname=${tapName(UUID, 2)},script=no,downscript=no`,
    ]);
    assert.deepEqual(values(argv, '-device'), [
      'VGA', // the VNC screen
      `virtio-net-pci,netdev=net0,id=net0-dev,mac=${defaultMac(UUID, 0)}`,
      'virtio-net-pci,netdev=net1,id=net1-dev,mac=52:54:00:aa:bb:cc',
      `virtio-net-pci,netdev=net2,id=net2-dev,mac=${defaultMac(UUID, 2)}`,
    ]);
    assert.deepEqual(bridgeTaps(UUID, spec({ nics: [{ network: 'user' }, { network: 'br0' }] })), [{ bridge: 'br0', tap: tapName(UUID, 1) }]);
  });

  it('derives tap names of at most 15 characters, distinct per NIC and per VM', () => {
    const names = new Set<string>();
    for (const uuid of [UUID, '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a5a', 'ffffffff-ffff-4fff-bfff-ffffffffffff']) {
      for (let i = 0; i < 8; i++) {
        const name = tapName(uuid, i);
        assert.ok(name.length <= 15, name);
        assert.match(name, /^[a-z0-9]+$/);
        names.add(name);
      }
    }
    assert.match(tapName(UUID, 0), /^dv[0-9a-f]{12}0$/);
    assert.equal(tapName(UUID, 3), tapName(UUID, 3), 'stable');
    assert.equal(names.size, 24, 'uuids sharing a 12-digit prefix still get their own taps');
    assert.match(defaultMac(UUID, 0), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(defaultMac(UUID, 0), defaultMac(UUID, 1));
  });

  describe('escaping: no value can add an option', () => {
    const hostile = '/tmp/a,b=c,,d/x,readonly=on';
    const cases: Array<[string, Partial<BuildQemuArgsInput>, string, string]> = [
      ['name', { name: 'x,process=evil' }, '-name', 'guest=x,,process=evil,debug-threads=on'],
      ['QMP socket path', { paths: { ...PATHS, qmpSocket: hostile } }, '-chardev', `socket,id=qmp,path=/tmp/a,,b=c,,,,d/x,,readonly=on,server=on,wait=off`],
      ['serial log path', { paths: { ...PATHS, serialLog: hostile } }, '-chardev', 'socket,id=serial0,path=/run/d/serial.sock,server=on,wait=off,logfile=/tmp/a,,b=c,,,,d/x,,readonly=on'],
      ['serial socket path', { paths: { ...PATHS, serialSocket: hostile } }, '-chardev', 'socket,id=serial0,path=/tmp/a,,b=c,,,,d/x,,readonly=on,server=on,wait=off,logfile=/run/d/serial.log'],
      ['VNC socket path', { paths: { ...PATHS, vncSocket: hostile } }, '-vnc', 'unix:/tmp/a,,b=c,,,,d/x,,readonly=on'],
      ['VNC TCP host', { spec: spec({ vnc: 'tcp' }), vncTcpHost: '127.0.0.1,password=on' }, '-vnc', '127.0.0.1,,password=on:0,to=99'],
      [
        'disk path',
        { spec: spec({ disks: [{ path: hostile, format: 'raw' }] }) },
        '-blockdev',
        'driver=file,node-name=disk0-file,filename=/tmp/a,,b=c,,,,d/x,,readonly=on',
      ],
      [
        'MAC address (unvalidated input)',
        { spec: spec({ nics: [{ network: 'user', mac: '52:54:00:00:00:01,romfile=/x' }] }) },
        '-device',
        'virtio-net-pci,netdev=net0,id=net0-dev,mac=52:54:00:00:00:01,,romfile=/x',
      ],
    ];
    for (const [title, input, flag, expected] of cases) {
      it(title, () => {
        assert.ok(values(build(input), flag).includes(expected), JSON.stringify(values(build(input), flag)));
      });
    }

    it('doubles every comma and nothing else', () => {
      assert.equal(escapeOptValue('a,b,,c'), 'a,,b,,,,c');
      assert.equal(escapeOptValue('no commas = fine'), 'no commas = fine');
    });

    it('round-trips a hostile name through the /proc parser', () => {
      const argv = ['qemu-system-x86_64', ...build({ name: 'a,b=c,,d' })];
      assert.deepEqual(parseQemuIdentity(argv), { uuid: UUID, name: 'a,b=c,,d' });
    });
  });
});

describe('/proc parsing', () => {
  it('reads the start time even when comm holds spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // field N holds "N"
    fields[0] = 'S';
    const line = `4242 (qemu (evil) x) ${fields.join(' ')}\n`;
    assert.deepEqual(parseProcStat(line), { state: 'S', startTime: 22, utime: 14, stime: 15 });
    assert.equal(parseProcStat('garbage'), null);
  });

  it('reads -uuid and the legacy -name forms', () => {
    assert.deepEqual(parseQemuIdentity(['qemu-system-x86_64', '-name', 'plain', '-uuid', UUID.toUpperCase()]), { uuid: UUID, name: 'plain' });
    assert.deepEqual(parseQemuIdentity(['qemu-system-x86_64', '-name', 'vm1,process=qemu-vm1']), { name: 'vm1' });
    assert.deepEqual(parseQemuIdentity(['qemu-system-x86_64', '-name', 'process=p,guest=g']), { name: 'g' });
    assert.deepEqual(parseQemuIdentity(['qemu-system-x86_64', '-m', '64']), {});
  });

  it('finds the tap devices live qemus hold, from their -netdev options', () => {
    const argv = ['qemu-system-x86_64', ...build({ spec: spec({ nics: [{ network: 'user' }, { network: 'br0' }] }) })];
    const foreign = ['qemu-system-x86_64', '-netdev', 'tap,id=n,ifname=tap,,odd,script=no', '-name', 'ifname=nottap'];
    assert.deepEqual(
      tapsInUse([{ pid: 10, argv }, { pid: 11, argv: foreign }]),
      new Map([[tapName(UUID, 1), 10], ['tap,odd', 11]]),
    );
  });
});
