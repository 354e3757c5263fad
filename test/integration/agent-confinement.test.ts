/**
 * Confined qemu and the host path allow-list (docs/security.md), through a
 * real `drover agent`, real etcd and real qemu: qemu runs as drover-qemu
 * under seccomp, in its own cgroup where cgroup v2 offers the controllers,
 * with a 0700 run dir it owns and its files as descriptors; every hostile
 * host path ends in ERROR with a sentence and never reaches a qemu; VNC
 * over TCP needs a password; and the agent keeps serving afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { chmod, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { GUEST, startCluster, waitForSerialText, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { lookupQemuUser, type QemuUser } from '../../src/hypervisor/qemu/qemu-user.js';
import { cgroupMemoryMax } from '../../src/hypervisor/qemu/vm-cgroup.js';
import { vncSecurityTypes } from '../helpers/vnc-probe.js';

const execFileAsync = promisify(execFile);

interface Runtime {
  pid: number;
  serial_log: string;
  vnc?: string;
}

/** Every qemu-system process's argv, joined by spaces. */
async function qemuCommandLines(): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('qemu-system')) out.push(cmd.split('\0').join(' '));
  }
  return out;
}

describe('confined qemu and host paths (real etcd, real qemu)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let agent: AgentProcess;
  let user: QemuUser;
  const hostile: string[] = [];

  before(async () => {
    const u = await lookupQemuUser('drover-qemu');
    assert.ok(u, 'drover-qemu exists (scripts/install-deps.sh creates it)');
    user = u;
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    agent = await cluster.startAgent('hv1');
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  async function expectError(uuid: string, pattern: RegExp): Promise<string> {
    const vm = await cluster.waitForStatus(uuid, 'ERROR', 30_000);
    const error = String(vm.error);
    assert.match(error, pattern);
    assert.doesNotMatch(error, /\n/, 'one sentence');
    assert.equal(vm.runtime, undefined, 'no qemu was started for it');
    return error;
  }

  it('runs qemu as drover-qemu under seccomp, in a 0700 run dir it owns, with its files as descriptors', async () => {
    const disk = join(cluster.dir, 'data.qcow2');
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
    const uuid = await cluster.createVm({ name: 'confined', spec: { disks: [{ path: disk }] } });
    const vm = await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    const rt = vm.runtime as Runtime;
    await waitForSerialText(rt.serial_log, 'DROVER-GUEST-READY');

    const status = await readFile(`/proc/${rt.pid}/status`, 'utf8');
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    assert.deepEqual(uids, [user.uid, user.uid, user.uid, user.uid], 'real, effective, saved and fs uid are drover-qemu');
    assert.match(status, /^Seccomp:\s+2$/m, 'seccomp filter mode');
    const groups = /^Groups:[ \t]*(.*)$/m.exec(status)?.[1]?.trim();
    assert.equal(groups, '', 'no supplementary groups (root\'s are dropped)');

    const runDir = join(agent.stateDir, 'vms', uuid);
    const st = await stat(runDir);
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.uid, user.uid);
    assert.equal((await stat(join(runDir, 'qmp.sock'))).uid, user.uid, 'qemu made its socket itself');

    const argv = (await readFile(`/proc/${rt.pid}/cmdline`, 'utf8')).split('\0');
    assert.ok(argv.includes('-sandbox'));
    assert.ok(argv.some((a) => a.includes('/dev/fdset/')), 'the disk is an fdset');
    assert.ok(argv.includes('/proc/self/fd/3'), 'the kernel is an inherited descriptor');
    assert.ok(!argv.some((a) => a.includes(disk) || a.includes(GUEST.kernel)), 'no host path of the record on qemu\'s command line');
  });

  it('puts each qemu in its own cgroup with memory.max, or says once that cgroups are unavailable', async (t) => {
    const uuid = await cluster.createVm({ name: 'cgrouped', spec: { memory: 96, vcpus: 1 } });
    const rt = (await cluster.waitForStatus(uuid, 'RUNNING', 60_000)).runtime as Runtime;
    const line = (await readFile(`/proc/${rt.pid}/cgroup`, 'utf8')).split('\n').find((l) => l.startsWith('0::')) ?? '';
    const log = await readFile(agent.logFile, 'utf8');
    if (line.endsWith(`/drover/${uuid}`)) {
      const mounts = await readFile('/proc/self/mounts', 'utf8');
      const mount = mounts.split('\n').map((l) => l.split(' ')).find((f) => f[2] === 'cgroup2')?.[1] ?? '/sys/fs/cgroup';
      const dir = join(mount, line.slice(3));
      assert.equal((await readFile(join(dir, 'memory.max'), 'utf8')).trim(), String(cgroupMemoryMax(96)));
      assert.equal((await readFile(join(dir, 'cpu.max'), 'utf8')).trim(), '100000 100000');
      await cluster.patchVm(uuid, { status: 'TO_DELETE' });
      await cluster.waitForVm(uuid, (v) => v === null, 60_000, 'the VM deleted');
      await assert.rejects(stat(dir), 'the cgroup is removed with the VM');
    } else {
      t.diagnostic(`this machine offers no cgroup v2 memory/cpu controllers (qemu's cgroup line: ${line || 'none'})`);
      const warnings = log.split('\n').filter((l) => l.includes('cgroups are unavailable'));
      assert.equal(warnings.length, 1, 'one warning, at the first start');
      assert.match(warnings[0] ?? '', /qemu processes run without memory and CPU limits/);
    }
  });

  it('refuses each hostile host path with a sentence, before any qemu sees it', async () => {
    const outsideDir = join('/var/tmp', `drover-outside-${process.pid}`);
    await execFileAsync('mkdir', ['-p', outsideDir]);
    const outside = join(outsideDir, 'disk.raw');
    await writeFile(outside, Buffer.alloc(1024 * 1024));
    const linkOut = join(cluster.dir, 'innocent.raw');
    await symlink('/etc/shadow', linkOut);
    const comma = join(cluster.dir, 'a,file=x.raw');
    await writeFile(comma, Buffer.alloc(1024 * 1024));
    const secretKernel = join(cluster.dir, 'secret-vmlinuz');
    await writeFile(secretKernel, await readFile(GUEST.kernel));
    await chmod(secretKernel, 0o600);
    const backed = join(cluster.dir, 'backed-by-shadow.qcow2');
    await execFileAsync('qemu-img', ['create', '-q', '-f', 'qcow2', '-u', '-b', '/etc/shadow', '-F', 'raw', backed, '16M']);
    try {
      const cases: Array<{ what: string; spec: Record<string, unknown>; path: string; why: RegExp }> = [
        { what: 'a disk outside allowed_paths', spec: { disks: [{ path: outside }] }, path: outside, why: /outside this host's allowed_paths/ },
        { what: '/etc/shadow as a disk', spec: { disks: [{ path: '/etc/shadow' }] }, path: '/etc/shadow', why: /outside this host's allowed_paths/ },
        { what: '/etc/shadow as a kernel', spec: { boot: { kernel: '/etc/shadow' } }, path: '/etc/shadow', why: /outside this host's allowed_paths/ },
        { what: 'a symlink in an allowed dir pointing out', spec: { disks: [{ path: linkOut }] }, path: linkOut, why: /resolves to \/etc\/shadow, outside/ },
        { what: 'a comma', spec: { disks: [{ path: comma }] }, path: comma, why: /contains a comma/ },
        { what: 'a kernel qemu\'s user cannot read', spec: { boot: { kernel: secretKernel } }, path: secretKernel, why: /not readable by qemu's user drover-qemu/ },
        { what: 'a qcow2 whose backing file is /etc/shadow', spec: { disks: [{ path: backed }] }, path: '/etc/shadow', why: /backing file path "\/etc\/shadow" is outside/ },
      ];
      for (const c of cases) {
        hostile.push(c.path);
        const uuid = await cluster.createVm({ name: `hostile-${hostile.length}`, spec: c.spec });
        const error = await expectError(uuid, c.why);
        assert.ok(error.includes(c.path), `${c.what}: the sentence names the path: ${error}`);
        assert.ok(!(await qemuCommandLines()).some((cmd) => cmd.includes(uuid)), `${c.what}: no qemu was started`);
      }
      // A `..` segment never gets past the record's schema.
      const dots = await cluster.createVm({ name: 'dots', spec: { disks: [{ path: `${cluster.dir}/../etc/shadow` }] } });
      await expectError(dots, /spec\.disks\.0\.path.*"\.\."/);

      const cmds = await qemuCommandLines();
      for (const p of [...hostile, outside]) assert.ok(!cmds.some((cmd) => cmd.includes(p)), `no qemu argv holds ${p}`);
    } finally {
      await execFileAsync('rm', ['-rf', outsideDir]);
    }
  });

  it('VNC over TCP: ERROR without a password or TLS; with vnc_password_file only password auth is offered', async () => {
    const uuid = await cluster.createVm({ name: 'vnc-open', spec: { vnc: 'tcp' } });
    await expectError(uuid, /VNC over TCP is refused on this host: it needs a password or TLS/);

    const passwordFile = join(cluster.dir, 'vnc-password');
    await writeFile(passwordFile, 'sesame12\n', { mode: 0o600 });
    await cluster.startAgent('hv2', { config: { vnc_password_file: passwordFile } });
    const guarded = await cluster.createVm({ name: 'vnc-guarded', spec: { vnc: 'tcp' } }, 'hv2');
    const rt = (await cluster.waitForStatus(guarded, 'RUNNING', 60_000)).runtime as Runtime;
    assert.match(rt.vnc ?? '', /^127\.0\.0\.1:59\d\d$/, 'on loopback by default');
    const argv = await readFile(`/proc/${rt.pid}/cmdline`, 'utf8');
    assert.ok(!argv.includes('sesame12'), 'the password is not on qemu\'s command line');
    assert.deepEqual(await vncSecurityTypes(rt.vnc ?? ''), [2], 'only VNC authentication (2), never None (1)');
  });

  it('keeps running and still starts a good VM afterwards', async () => {
    const uuid = await cluster.createVm({ name: 'after-all-that' });
    await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    assert.equal(agent.child.exitCode, null);
  });
});
