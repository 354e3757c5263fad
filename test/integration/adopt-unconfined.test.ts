/**
 * An agent upgraded to confined qemu adopts the VMs an older agent started
 * (qemu as root, no cgroup, host paths on its command line) as before, and
 * trusts nothing in their handle.json beyond this VM's own names (the run
 * dir is now qemu's user's, so a handle could be rewritten). Real qemu.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { vmSpecSchema } from '../../src/contract/vm-record.js';
import { buildQemuArgs } from '../../src/hypervisor/qemu/build-qemu-args.js';
import { readStartTime } from '../../src/hypervisor/qemu/proc.js';
import { lookupQemuUser } from '../../src/hypervisor/qemu/qemu-user.js';
import { createRunDir, runPaths, writeHandle } from '../../src/hypervisor/qemu/run-dir.js';
import { spawnQemu } from '../../src/hypervisor/qemu/spawn-qemu.js';
import { makeQemuHarness, type QemuHarness } from '../helpers/qemu-harness.js';
import { ensureGuest, guestSpec, READY_MARKER, waitForSerial } from '../helpers/guest.js';

describe('adopting a qemu started before confinement (real qemu)', () => {
  let h: QemuHarness;
  before(async () => {
    h = await makeQemuHarness();
  });
  after(async () => {
    await h?.close();
  });

  it('recovers it running as root without a cgroup, ignores a forged cgroup, stops it, and starts it confined', async () => {
    const files = await ensureGuest();
    const uuid = randomUUID();
    const spec = vmSpecSchema.parse(guestSpec(files));
    const paths = runPaths(h.runRoot, uuid);
    // What the agent before confinement did: root, host paths in argv, no sandbox, no cgroup.
    await createRunDir(paths);
    const argv = buildQemuArgs({ uuid, name: 'old-vm', spec, paths, accel: 'tcg' }).filter((a, i, all) => a !== '-sandbox' && all[i - 1] !== '-sandbox');
    const child = await spawnQemu('qemu-system-x86_64', argv, paths.qemuLog, { user: null });
    const pid = child.pid as number;
    const decoy = join(h.dir, 'not-a-cgroup');
    await mkdir(decoy);
    await writeHandle(paths, {
      uuid,
      name: 'old-vm',
      pid,
      startTime: (await readStartTime(pid)) ?? 0,
      startedAt: new Date().toISOString(),
      qmpSocket: paths.qmpSocket,
      serialLog: paths.serialLog,
      serialSocket: paths.serialSocket,
      cgroup: decoy, // as a rewritten handle.json could claim
    });
    await waitForSerial(paths.serialLog, READY_MARKER, 30_000);
    child.removeAllListeners();

    const hv = h.newInstance();
    const handle = await hv.recover(uuid);
    assert.ok(handle, 'adopted');
    assert.equal(handle.pid, pid);
    assert.equal(hv.inspect(uuid).state, 'running');
    assert.match(await readFile(`/proc/${pid}/status`, 'utf8'), /^Uid:\s+0\s/m, 'still the old root qemu: adopted, not restarted');

    await hv.stop(uuid, { timeoutMs: 20_000, force: false });
    assert.equal(hv.inspect(uuid).state, 'absent');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok((await stat(decoy)).isDirectory(), 'a cgroup path that is not this VM\'s own is never removed');

    // Its next start is confined, in the run dir (and over the serial log) the old root qemu left.
    assert.equal((await stat(paths.serialLog)).uid, 0);
    const again = await hv.start({ uuid, name: 'old-vm', spec });
    await waitForSerial(again.serialLog, READY_MARKER, 30_000);
    const user = await lookupQemuUser('drover-qemu');
    assert.match(await readFile(`/proc/${again.pid}/status`, 'utf8'), new RegExp(`^Uid:\\s+${user?.uid ?? -1}\\s`, 'm'));
    assert.equal((await stat(paths.dir)).uid, user?.uid, 'the run dir now belongs to qemu\'s user');
    await hv.stop(uuid, { timeoutMs: 0, force: true });
  });
});
