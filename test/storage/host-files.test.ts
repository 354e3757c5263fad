/**
 * host-files.ts, qemu-user.ts and vm-cgroup.ts on real files: backing chains
 * made by qemu-img, symlinks, permissions, a passwd file, and a directory
 * standing in for a cgroup2 mount (VmCgroups takes its mount as a root).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSpecFiles } from '../../src/hypervisor/qemu/host-files.js';
import { resolveAllowedDirs } from '../../src/hypervisor/qemu/host-paths.js';
import { checkQemuUserReaches, lookupQemuUser } from '../../src/hypervisor/qemu/qemu-user.js';
import { cgroupMemoryMax, VmCgroups } from '../../src/hypervisor/qemu/vm-cgroup.js';
import { silentLogger } from '../../src/lib/logger.js';
import type { VmSpec } from '../../src/contract/vm-record.js';

const run = promisify(execFile);
const USER = { name: 'tester', uid: 4242, gid: 4242 };
const spec = (o: Partial<VmSpec>): VmSpec => ({ vcpus: 1, memory: 64, vnc: 'none', restart: 'never', ...o });

describe('host files on disk', () => {
  let dir: string;
  let allowed: string[];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-hostfiles-'));
    await mkdir(join(dir, 'ok'));
    allowed = await resolveAllowedDirs([join(dir, 'ok')]);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('opens a qcow2 chain (relative backing name, backing format from the header) as descriptors of the real files', async () => {
    const base = join(dir, 'ok', 'base.raw');
    const mid = join(dir, 'ok', 'mid.qcow2');
    const top = join(dir, 'ok', 'top.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'raw', base, '1M']);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', mid]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2', top]);
    const files = await openSpecFiles(spec({ disks: [{ path: top }] }), { allowed, user: null });
    try {
      const chain = files.disks[0]?.chain ?? [];
      assert.deepEqual(chain.map((f) => f.format), ['qcow2', 'qcow2', 'raw']);
      assert.deepEqual(chain.map((f) => f.fds.length), [2, 1, 1], 'read-write and read-only for the top, read-only below');
      const opened = await Promise.all(files.handles.map((h) => readlink(`/proc/self/fd/${h.fd}`)));
      assert.deepEqual(opened, [top, top, mid, base]);
      assert.deepEqual(files.names, [['/dev/fdset/1', top], ['/dev/fdset/2', mid], ['/dev/fdset/3', base]]);
    } finally {
      await files.close();
    }
    assert.equal(files.handles.length, 0, 'closed');
  });

  it('refuses a backing file outside the list, and closes what it opened', async () => {
    const outside = join(dir, 'outside.raw');
    await writeFile(outside, Buffer.alloc(4096));
    const top = join(dir, 'ok', 'escapes.qcow2');
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', '../outside.raw', '-F', 'raw', top]);
    await assert.rejects(openSpecFiles(spec({ disks: [{ path: top }] }), { allowed, user: null }), new RegExp(`The disk 1 backing file path "${outside}" is outside`));
  });

  it('refuses a symlink pointing out, and a kernel qemu\'s user cannot read', async () => {
    await writeFile(join(dir, 'secret'), 'x');
    await symlink(join(dir, 'secret'), join(dir, 'ok', 'link'));
    await assert.rejects(openSpecFiles(spec({ disks: [{ path: join(dir, 'ok', 'link') }] }), { allowed, user: null }), /resolves to .*secret, outside this host's allowed_paths/);
    const kernel = join(dir, 'ok', 'vmlinuz');
    await writeFile(kernel, 'k');
    await chmod(kernel, 0o600);
    await assert.rejects(openSpecFiles(spec({ boot: { kernel } }), { allowed, user: USER }), /not readable by qemu's user tester \(mode 0600\)/);
    await chmod(kernel, 0o644);
    const files = await openSpecFiles(spec({ boot: { kernel } }), { allowed, user: USER });
    assert.equal(files.kernel, '/proc/self/fd/3');
    await files.close();
  });

  it('refuses a FIFO named as a disk without hanging on it', async () => {
    const fifo = join(dir, 'ok', 'pipe');
    await run('mkfifo', [fifo]);
    await assert.rejects(openSpecFiles(spec({ disks: [{ path: fifo }] }), { allowed, user: null }), /The disk 1 path ".*pipe" is not a regular file/);
  });

  it('looks the qemu user up in a passwd file, refusing a missing one and uid 0', async () => {
    const passwd = join(dir, 'passwd');
    await writeFile(passwd, 'root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/:/bin/sh\ndrover-qemu:x:998:997::/nonexistent:/usr/sbin/nologin\n');
    assert.deepEqual(await lookupQemuUser('drover-qemu', passwd), { name: 'drover-qemu', uid: 998, gid: 997 });
    assert.equal(await lookupQemuUser('root', passwd), null);
    await assert.rejects(lookupQemuUser('toor', passwd), /has uid 0/);
    await assert.rejects(lookupQemuUser('nobody-here', passwd), /qemu_user nobody-here does not exist on this host; create it/);
  });

  it('says which directory qemu\'s user cannot search', async () => {
    const closed = join(dir, 'closed');
    await mkdir(join(closed, 'state'), { recursive: true });
    await chmod(dir, 0o711);
    await chmod(closed, 0o700);
    await assert.rejects(checkQemuUserReaches(join(closed, 'state'), USER), new RegExp(`${closed} has mode 0700; make it searchable`));
    await chmod(closed, 0o711);
    await checkQemuUserReaches(join(closed, 'state'), USER);
  });
});

describe('VmCgroups over a directory standing in for cgroup2', () => {
  let mount: string;
  before(async () => {
    mount = await mkdtemp(join(tmpdir(), 'drover-cgroup-'));
  });
  after(() => rm(mount, { recursive: true, force: true }));

  it('without the memory controller: off, with one warning', async () => {
    await writeFile(join(mount, 'cgroup.controllers'), 'cpu io pids\n');
    const warnings: string[] = [];
    const logger = { ...silentLogger(), warn: (_o: unknown, m?: string) => void warnings.push(String(m)) } as unknown as ReturnType<typeof silentLogger>;
    const cg = new VmCgroups({ mount, logger });
    assert.equal(await cg.place('2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59', 1, { memoryMib: 64, vcpus: 1 }), null);
    assert.equal(await cg.place('2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a5a', 1, { memoryMib: 64, vcpus: 1 }), null);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? '', /does not offer the memory controller/);
  });

  it('with memory and cpu: enables them for drover/, writes the limits and the pid, removes the dir', async () => {
    await writeFile(join(mount, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    const cg = new VmCgroups({ mount, logger: silentLogger() });
    const uuid = '2b0c4f7e-3a51-4b8e-9a0e-6f1d2c3b4a59';
    const dir = await cg.place(uuid, 12345, { memoryMib: 512, vcpus: 2 });
    assert.equal(dir, join(mount, 'drover', uuid));
    assert.equal(await readFile(join(mount, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu');
    assert.equal(await readFile(join(mount, 'drover', 'cgroup.subtree_control'), 'utf8'), '+memory +cpu');
    assert.equal(await readFile(join(dir, 'memory.max'), 'utf8'), String(cgroupMemoryMax(512)));
    assert.equal(await readFile(join(dir, 'cpu.max'), 'utf8'), '200000 100000');
    assert.equal(await readFile(join(dir, 'cgroup.procs'), 'utf8'), '12345');
    // A real cgroup dir holds only kernel files, which rmdir ignores; here they are plain files.
    for (const f of ['memory.max', 'cpu.max', 'cgroup.procs']) await rm(join(dir, f));
    await cg.remove(dir);
    await assert.rejects(stat(dir));
  });
});
