/**
 * QemuHypervisor against real qemu (TCG) and the test guest: the shared
 * contract, then what only qemu has (argv escaping end to end, VNC over TCP,
 * disks, tap devices, a missing binary, exits of recovered VMs, latency).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { access, constants, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { DroverError, isTerminal } from '../../src/lib/errors.js';
import { tapName } from '../../src/hypervisor/qemu/build-qemu-args.js';
import { classifyExit } from '../../src/hypervisor/qemu/classify-exit.js';
import type { VmExit } from '../../src/hypervisor/hypervisor.js';
import { runHypervisorContract } from './hypervisor.contract.js';
import { makeQemuHarness, type QemuHarness } from '../helpers/qemu-harness.js';
import { ensureGuest, guestSpec, type GuestFiles } from '../helpers/guest.js';

runHypervisorContract('qemu', makeQemuHarness);

function run(file: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, (err, stdout, stderr) => resolve({ ok: !err, out: `${stdout}${stderr}` }));
  });
}

async function waitExit(exits: VmExit[], uuid: string, timeoutMs: number): Promise<VmExit> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = exits.find((e) => e.uuid === uuid);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no exit for ${uuid} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('QemuHypervisor specifics', () => {
  let h: QemuHarness;
  let files: GuestFiles;
  const exits: VmExit[] = [];
  before(async () => {
    files = await ensureGuest();
    h = await makeQemuHarness();
    h.hv.onExit((e) => exits.push(e));
  });
  after(async () => h?.close());

  it('refuses host paths with commas, spaces or "=" (INVALID_SPEC, nothing spawned); a comma-laden run dir still works', async () => {
    const weird = join(h.dir, 'in,put =x,,y');
    await mkdir(weird);
    const kernel = join(weird, 'vm,linuz');
    await symlink(files.kernel, kernel);
    const uuid = randomUUID();
    await assert.rejects(
      h.hv.start({ uuid, name: 'hostile', spec: guestSpec(files, 'idle', { boot: { kernel } }) }),
      (e: unknown) => e instanceof DroverError && e.code === 'INVALID_SPEC' && isTerminal(e) && e.message.includes(kernel) && /contains a comma/.test(e.message),
    );
    assert.equal(h.hv.inspect(uuid).state, 'absent');
    await assert.rejects(access(join(h.runRoot, uuid)), 'refused before even its run dir was made');
  });

  it('gives qemu its disks and kernel as descriptors, and VNC over TCP with a password', async (t) => {
    const passwordFile = join(h.dir, 'vnc-password');
    await writeFile(passwordFile, 'secret99\n', { mode: 0o600 });
    const hv = h.newInstance({ vnc: { passwordFile } });
    const kernel = join(h.dir, 'linked-vmlinuz');
    await symlink(files.kernel, kernel);
    const raw = join(h.dir, 'data.img');
    const qcow = join(h.dir, 'disk-two.qcow2');
    assert.ok((await run('qemu-img', ['create', '-f', 'raw', raw, '1M'])).ok);
    assert.ok((await run('qemu-img', ['create', '-f', 'qcow2', qcow, '4M'])).ok);

    const uuid = randomUUID();
    const began = Date.now();
    const handle = await hv.start({
      uuid,
      name: 'described',
      spec: guestSpec(files, 'idle', {
        boot: { kernel, initrd: files.initrd, cmdline: 'console=ttyS0 quiet' },
        disks: [{ path: raw }, { path: qcow }],
        nics: [{ network: 'user' }],
        vnc: 'tcp',
      }),
    });
    const startMs = Date.now() - began;
    const argv = (await readFile(`/proc/${handle.pid}/cmdline`, 'utf8')).split('\0');
    assert.ok(!argv.some((a) => a.includes(raw) || a.includes(qcow) || a.includes(kernel)), 'no host path on the command line');
    // qemu holds both disks open under their exact names (so the format and path survived escaping).
    const fdDir = `/proc/${handle.pid}/fd`;
    const open = await Promise.all((await readdir(fdDir)).map((fd) => readlink(join(fdDir, fd)).catch(() => '')));
    assert.ok(open.includes(raw), 'raw disk open');
    assert.ok(open.includes(qcow), 'qcow2 disk open');
    assert.ok(open.includes(files.kernel), 'the kernel, by its real path, open');
    // VNC on loopback TCP, port learned from query-vnc, and it speaks RFB.
    assert.match(handle.vnc ?? '', /^127\.0\.0\.1:59\d\d$/);
    const [host, port] = (handle.vnc ?? '').split(':');
    const banner = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), host, () => undefined);
      s.once('data', (d) => {
        resolve(d.toString());
        s.destroy();
      });
      s.once('error', reject);
    });
    assert.match(banner, /^RFB /);
    // The run dir is private, the handle readable by its owner only.
    assert.equal((await stat(join(h.runRoot, uuid))).mode & 0o777, 0o700);
    assert.equal((await stat(join(h.runRoot, uuid, 'handle.json'))).mode & 0o777, 0o600);
    t.diagnostic(`start latency (spawn to running over QMP, TCG, 2 disks): ${startMs} ms`);
    await hv.stop(uuid, { timeoutMs: 0, force: true });
  });

  it('puts the VNC unix socket at the (comma-laden) run dir path', async () => {
    const uuid = randomUUID();
    const handle = await h.hv.start({ uuid, name: 'vnc-unix', spec: guestSpec(files) });
    assert.equal(handle.vnc, join(h.runRoot, uuid, 'vnc.sock'));
    assert.ok((await stat(handle.vnc)).isSocket());
    await h.hv.stop(uuid, { timeoutMs: 0, force: true });
  });

  it('starts fast: spawn to running over QMP, median of 3', async (t) => {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const uuid = randomUUID();
      const began = Date.now();
      await h.hv.start({ uuid, name: `fast-${i}`, spec: guestSpec(files) });
      times.push(Date.now() - began);
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
    }
    times.sort((a, b) => a - b);
    t.diagnostic(`start latency: ${times.join(', ')} ms`);
    assert.ok((times[1] ?? Infinity) < 2000, `median ${times[1]} ms`);
  });

  it('refuses an image disk with the terminal sentence, before spawning', async () => {
    await assert.rejects(
      h.hv.start({ uuid: randomUUID(), name: 'img', spec: guestSpec(files, 'idle', { disks: [{ image: 'debian-12', size: 4096 }] }) }),
      (e: unknown) =>
        e instanceof DroverError &&
        isTerminal(e) &&
        e.message === 'Disk 1 uses image debian-12, which must be prepared as an overlay file before the hypervisor starts the VM.',
    );
  });

  it('names a missing qemu binary in a terminal error', async () => {
    const hv = h.newInstance({ qemuBinary: join(h.dir, 'no-such-qemu') });
    await assert.rejects(
      hv.start({ uuid: randomUUID(), name: 'nobin', spec: guestSpec(files) }),
      (e: unknown) => e instanceof DroverError && e.code === 'SPAWN_FAILED' && isTerminal(e) && e.message.includes('no-such-qemu'),
    );
  });

  it('reports an outside SIGTERM as a crash with qemu\'s own last words', async () => {
    const uuid = randomUUID();
    const handle = await h.hv.start({ uuid, name: 'term', spec: guestSpec(files) });
    process.kill(handle.pid, 'SIGTERM');
    const exit = await waitExit(exits, uuid, 5000);
    assert.equal(exit.reason, 'crash');
    assert.match(exit.detail, /^qemu exited with code 0 after SHUTDOWN \(host-signal\): .*terminating on signal 15/);
  });

  it('detects the death of a recovered VM (not its child) through QMP and /proc', async () => {
    const uuid = randomUUID();
    const handle = await h.hv.start({ uuid, name: 'orphan', spec: guestSpec(files) });
    await h.hv.detachAll();
    const hv2 = h.newInstance();
    const exits2: VmExit[] = [];
    hv2.onExit((e) => exits2.push(e));
    assert.equal((await hv2.recover(uuid))?.pid, handle.pid);
    const killedAt = Date.now();
    process.kill(handle.pid, 'SIGKILL');
    const exit = await waitExit(exits2, uuid, 3000);
    assert.ok(Date.now() - killedAt < 1500, 'noticed promptly');
    assert.equal(exit.reason, 'crash');
    assert.match(exit.detail, /exit status is unknown/);
    await hv2.detachAll();
  });

  it('adopts a qemu whose handle.json was never written (its agent was killed right after the spawn) instead of starting a second one', async () => {
    // Found by test/chaos/agent-kills.chaos.ts: the next agent started a second qemu, which qemu's image lock refused, forever.
    const uuid = randomUUID();
    const spec = guestSpec(files);
    const handle = await h.hv.start({ uuid, name: 'unsaved', spec });
    await h.hv.detachAll();
    await rm(join(h.runRoot, uuid, 'handle.json'));
    const hv2 = h.newInstance();
    assert.equal((await hv2.listSaved()).includes(uuid), false, 'nothing saved for it');
    const again = await hv2.start({ uuid, name: 'unsaved', spec });
    assert.equal(again.pid, handle.pid, 'the running qemu, adopted');
    assert.equal(hv2.inspect(uuid).state, 'running');
    assert.deepEqual((await hv2.scan()).filter((d) => d.uuid === uuid).map((d) => [d.pid, d.managed]), [[handle.pid, true]], 'one qemu for the VM, and it is managed');
    assert.ok((await hv2.listSaved()).includes(uuid), 'its handle is saved now');
    await hv2.stop(uuid, { timeoutMs: 0, force: true });
    await hv2.detachAll();
  });

  describe('bridge NICs (root only)', { skip: process.getuid?.() !== 0 ? 'needs root for tap devices' : false }, () => {
    const bridge = `drvt${randomBytes(3).toString('hex')}`;
    before(async () => {
      await access('/dev/net/tun', constants.R_OK | constants.W_OK);
      const made = await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge']);
      assert.ok(made.ok, made.out);
    });
    after(async () => {
      await run('ip', ['link', 'delete', 'dev', bridge]);
    });

    it('creates the tap on the bridge for qemu and deletes it after exit', async () => {
      const uuid = randomUUID();
      const tap = tapName(uuid, 1);
      await h.hv.start({ uuid, name: 'bridged', spec: guestSpec(files, 'idle', { nics: [{ network: 'user' }, { network: bridge }] }) });
      const shown = await run('ip', ['-o', 'link', 'show', 'dev', tap]);
      assert.ok(shown.ok, shown.out);
      assert.match(shown.out, new RegExp(`master ${bridge}`));
      // Network counters are the tap's, seen from the guest: the tap's tx is what the guest received.
      const tapCounter = async (n: string): Promise<number> => Number(await readFile(`/sys/class/net/${tap}/statistics/${n}`, 'utf8'));
      const before = { rx: await tapCounter('tx_bytes'), tx: await tapCounter('rx_bytes'), rxp: await tapCounter('tx_packets') };
      const sample = await h.hv.sample(uuid);
      const after = { rx: await tapCounter('tx_bytes'), tx: await tapCounter('rx_bytes'), rxp: await tapCounter('tx_packets') };
      assert.ok(sample?.net, 'a VM with a bridge NIC has network counters');
      assert.ok(sample.net.rxBytes >= before.rx && sample.net.rxBytes <= after.rx, `rx ${sample.net.rxBytes} in [${before.rx}, ${after.rx}]`);
      assert.ok(sample.net.txBytes >= before.tx && sample.net.txBytes <= after.tx);
      assert.ok(sample.net.rxPackets >= before.rxp && sample.net.rxPackets <= after.rxp);
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      assert.equal((await run('ip', ['link', 'show', 'dev', tap])).ok, false, 'tap deleted');
    });

    it('fails terminally, naming the bridge, when it does not exist, and leaves no tap', async () => {
      const uuid = randomUUID();
      const err = await h.hv
        .start({ uuid, name: 'nobridge', spec: guestSpec(files, 'idle', { nics: [{ network: 'drvt-missing' }] }) })
        .then(() => assert.fail('started'), (e: unknown) => e);
      assert.ok(err instanceof DroverError && isTerminal(err));
      assert.match(err.message, /bridge drvt-missing/);
      assert.equal((await run('ip', ['link', 'show', 'dev', tapName(uuid, 0)])).ok, false);
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
    });
  });
});

describe('classifyExit', () => {
  const base = { stopRequested: false, code: null, signal: null, lastLogLine: '' } as const;
  const cases: Array<[string, Parameters<typeof classifyExit>[0], string, string]> = [
    ['stop wins over a guest power-off', { ...base, stopRequested: true, shutdown: { guest: true, reason: 'guest-shutdown' }, code: 0 }, 'requested', 'The VM was stopped on request.'],
    ['stop that had to kill', { ...base, stopRequested: true, killedAfterMs: 500, signal: 'SIGKILL' }, 'requested', 'The guest did not power off within 500 ms, so qemu was killed.'],
    ['forced stop', { ...base, stopRequested: true, forced: true, signal: 'SIGKILL' }, 'requested', 'The VM was killed on request.'],
    ['guest power-off', { ...base, shutdown: { guest: true, reason: 'guest-shutdown' }, code: 0 }, 'guest-poweroff', 'The guest powered off.'],
    ['guest panic', { ...base, shutdown: { guest: true, reason: 'guest-panic' }, code: 0 }, 'crash', 'The guest panicked.'],
    ['kill -9', { ...base, signal: 'SIGKILL' }, 'crash', 'qemu was killed by SIGKILL.'],
    ['qemu error', { ...base, code: 1, lastLogLine: 'qemu-system-x86_64: something broke.' }, 'crash', 'qemu exited with code 1: qemu-system-x86_64: something broke.'],
    ['unknown status', { ...base }, 'crash', 'qemu exited unexpectedly (an earlier agent started it, so its exit status is unknown).'],
  ];
  for (const [title, facts, reason, detail] of cases) {
    it(title, () => assert.deepEqual(classifyExit(facts), { reason, detail }));
  }
});
