/**
 * The Hypervisor contract (STYLE.md 9): one suite that every implementation
 * passes, so the fake the agent tests use cannot drift from qemu.
 *
 * An implementation provides a harness: the hypervisor, a way to make a
 * second instance over the same host (a restarted agent), specs whose guests
 * behave in known ways, and the few things only it can do (kill its process
 * from outside, corrupt its saved handle, start a VM it does not manage).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { VmSpec } from '../../src/contract/vm-record.js';
import { DroverError, isTerminal } from '../../src/lib/errors.js';
import type { Hypervisor, VmExit, VmHandle } from '../../src/hypervisor/hypervisor.js';
import type { GuestKind } from '../helpers/guest.js';

export interface ForeignVm {
  pid: number;
  uuid: string;
  name: string;
  stop(): Promise<void>;
}

export interface HypervisorHarness {
  readonly hv: Hypervisor;
  /** A second hypervisor over the same host, like a restarted agent. Cleaned up by close(). */
  newInstance(): Hypervisor;
  /** A valid spec for VM `uuid` whose guest behaves as `kind`. */
  spec(uuid: string, kind?: GuestKind): VmSpec;
  /** A spec whose kernel does not exist, and that path. */
  missingKernelSpec(): { spec: VmSpec; path: string };
  /** Arranges for the next start (with the returned spec) to fail inside the hypervisor; the message it must carry. */
  arrangeStartFailure(): Promise<{ spec: VmSpec; message: RegExp }>;
  /** Resolves once the guest has booted (qemu: READY on the serial console). */
  waitBooted(handle: VmHandle): Promise<void>;
  /** The VM's control socket exists (qemu: the QMP socket). */
  controlSocketExists(handle: VmHandle): Promise<boolean>;
  /** The VM's run directory exists. */
  runDirExists(uuid: string): Promise<boolean>;
  isAlive(pid: number): Promise<boolean>;
  /** kill -9 from outside the hypervisor. */
  killHard(handle: VmHandle): Promise<void>;
  /** Makes the saved handle name another process (as if the pid had been reused). */
  corruptSavedHandle(uuid: string): Promise<void>;
  /** A VM process the hypervisor did not start. */
  startForeign(): Promise<ForeignVm>;
  /** A hypervisor on another host (its own run root / world), as the target of a live migration. */
  otherHost(): Hypervisor;
  /** A migration URI where nothing listens. */
  readonly deadMigrationUri: string;
  /** A bootable spec for VM `uuid` whose guest keeps writing to its one disk (qemu: the disk-marker guest). */
  writerSpec(uuid: string): Promise<VmSpec>;
  /** A bootable spec for VM `uuid` with one new empty disk per format given (qcow2 or raw). */
  diskSpec(uuid: string, formats: ReadonlyArray<'qcow2' | 'raw'>): Promise<VmSpec>;
  /** Kills whatever is left and removes temp files. */
  close(): Promise<void>;
  /** Per-implementation timings. */
  readonly timeouts: { boot: number; exit: number };
}

/** Collects onExit reports and waits for them. */
class ExitLog {
  readonly exits: VmExit[] = [];
  private waiters: Array<() => void> = [];
  readonly unsubscribe: () => void;

  constructor(hv: Hypervisor) {
    this.unsubscribe = hv.onExit((e) => {
      this.exits.push(e);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  of(uuid: string): VmExit[] {
    return this.exits.filter((e) => e.uuid === uuid);
  }

  async next(uuid: string, timeoutMs: number): Promise<VmExit> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.of(uuid)[0];
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no exit reported for ${uuid} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

const settle = (ms = 300): Promise<void> => new Promise((r) => setTimeout(r, ms));

function vmName(uuid: string): string {
  return `t-${uuid.slice(0, 8)}`;
}

export function runHypervisorContract(name: string, makeHarness: () => Promise<HypervisorHarness>): void {
  describe(`Hypervisor contract: ${name}`, () => {
    let h: HypervisorHarness;
    let log: ExitLog;
    before(async () => {
      h = await makeHarness();
      log = new ExitLog(h.hv);
    });
    after(async () => h?.close());

    const start = (uuid: string, kind: GuestKind = 'idle'): Promise<VmHandle> =>
      h.hv.start({ uuid, name: vmName(uuid), spec: h.spec(uuid, kind) });

    it('starts a VM, reports it running, returns the same handle twice, and stops it gracefully', async () => {
      const uuid = randomUUID();
      const spawned: VmHandle[] = [];
      const req = { uuid, name: vmName(uuid), spec: h.spec(uuid) };
      const [handle, again] = await Promise.all([
        h.hv.start(req, { onSpawned: (x) => spawned.push(x) }),
        h.hv.start(req, { onSpawned: (x) => spawned.push(x) }),
      ]);
      assert.equal(spawned.length, 1, 'onSpawned is called once per process');
      assert.equal(spawned[0]?.pid, handle.pid);
      assert.deepEqual(again, handle);
      assert.equal(handle.uuid, uuid);
      assert.equal(handle.name, vmName(uuid));
      assert.ok(handle.pid > 0);
      assert.ok(await h.isAlive(handle.pid));
      assert.ok(await h.controlSocketExists(handle), 'the QMP socket exists');
      assert.deepEqual(h.hv.inspect(uuid), { state: 'running', handle });
      assert.ok((await h.hv.listSaved()).includes(uuid));
      const seen = (await h.hv.scan()).find((d) => d.pid === handle.pid);
      assert.equal(seen?.managed, true);
      assert.equal(seen?.uuid, uuid);
      assert.equal(seen?.name, vmName(uuid));

      await h.waitBooted(handle);
      assert.deepEqual(await h.hv.start(req), handle, 'starting a running VM returns its handle');

      await h.hv.stop(uuid, { timeoutMs: 20_000, force: false });
      assert.equal(await h.isAlive(handle.pid), false, 'stop resolves once the process is gone');
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
      await settle();
      const exits = log.of(uuid);
      assert.equal(exits.length, 1, 'one exit per process');
      assert.equal(exits[0]?.reason, 'requested');
      assert.match(exits[0]?.detail ?? '', /stopped on request/, 'the guest honoured ACPI (not killed after the timeout)');
      await h.hv.stop(uuid, { timeoutMs: 1000, force: false }); // no-op
      assert.equal(log.of(uuid).length, 1);
    });

    it('stops a VM by force at once, reported as requested', async () => {
      const uuid = randomUUID();
      const handle = await start(uuid);
      await h.hv.stop(uuid, { timeoutMs: 60_000, force: true });
      assert.equal(await h.isAlive(handle.pid), false);
      await settle();
      assert.deepEqual(log.of(uuid).map((e) => e.reason), ['requested']);
    });

    it('shows a starting VM as present, and a stop during start wins over the start', async () => {
      const uuid = randomUUID();
      let stopping: Promise<void> | null = null;
      let during: string | null = null;
      const err = await h.hv
        .start(
          { uuid, name: vmName(uuid), spec: h.spec(uuid) },
          {
            onSpawned: () => {
              during = h.hv.inspect(uuid).state;
              stopping = h.hv.stop(uuid, { timeoutMs: 0, force: true });
            },
          },
        )
        .then(() => null, (e: unknown) => e);
      assert.equal(during, 'running', 'a VM with a process is never reported absent');
      assert.ok(stopping, 'onSpawned ran');
      await stopping;
      // The start either lost the race (rejected) or won it (the exit is then reported).
      if (err !== null) {
        assert.ok(err instanceof DroverError && err.code === 'START_FAILED', String(err));
        assert.match(err.message, /stopped while it was starting/);
      }
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
      await settle();
      assert.equal(log.of(uuid).length, err === null ? 1 : 0);
    });

    it('kills a guest that ignores ACPI once the stop timeout passes', async () => {
      const uuid = randomUUID();
      const handle = await start(uuid, 'ignore-acpi');
      const began = Date.now();
      await h.hv.stop(uuid, { timeoutMs: 500, force: false });
      assert.ok(Date.now() - began >= 450, 'waited for the timeout');
      assert.equal(await h.isAlive(handle.pid), false);
      await settle();
      const exits = log.of(uuid);
      assert.deepEqual(exits.map((e) => e.reason), ['requested']);
      assert.match(exits[0]?.detail ?? '', /did not power off within 500 ms/);
    });

    it('reports a VM killed from outside as a crash, once', async () => {
      const uuid = randomUUID();
      const handle = await start(uuid);
      await h.killHard(handle);
      const exit = await log.next(uuid, h.timeouts.exit);
      assert.equal(exit.reason, 'crash');
      assert.match(exit.detail, /SIGKILL/);
      assert.ok(exit.at instanceof Date);
      await settle();
      assert.equal(log.of(uuid).length, 1);
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
    });

    it('reports a guest that powers itself off as guest-poweroff, once', async () => {
      const uuid = randomUUID();
      const handle = await start(uuid, 'poweroff');
      const exit = await log.next(uuid, h.timeouts.boot + h.timeouts.exit);
      assert.equal(exit.reason, 'guest-poweroff');
      assert.equal(await h.isAlive(handle.pid), false);
      await settle();
      assert.equal(log.of(uuid).length, 1);
    });

    it('lets a new instance recover a running VM after detachAll', async () => {
      const uuid = randomUUID();
      const handle = await start(uuid);
      await h.waitBooted(handle);
      await h.hv.detachAll();
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' }, 'a detached VM is no longer managed');
      assert.ok(await h.isAlive(handle.pid), 'detachAll kills nothing');

      const hv2 = h.newInstance();
      const log2 = new ExitLog(hv2);
      assert.ok((await hv2.listSaved()).includes(uuid));
      const recovered = await hv2.recover(uuid);
      assert.ok(recovered);
      assert.equal(recovered.pid, handle.pid);
      assert.equal(recovered.startTime, handle.startTime);
      assert.equal(hv2.inspect(uuid).state, 'running');
      assert.equal((await hv2.scan()).find((d) => d.pid === handle.pid)?.managed, true);
      assert.deepEqual(await hv2.recover(uuid), recovered, 'recovering twice is harmless');

      // A graceful stop needs the control channel (QMP) back.
      await hv2.stop(uuid, { timeoutMs: 20_000, force: false });
      assert.equal(await h.isAlive(handle.pid), false);
      await settle();
      assert.deepEqual(log2.of(uuid).map((e) => [e.reason, e.detail]), [['requested', 'The VM was stopped on request.']]);
      assert.equal(log.of(uuid).length, 0, 'the detached instance reports nothing');
      assert.equal(await hv2.recover(uuid), null, 'a stopped VM is not recoverable');
      log2.unsubscribe();
    });

    it('recovers nothing for an unknown VM or a saved handle whose pid is another process', async () => {
      const hv2 = h.newInstance();
      assert.equal(await hv2.recover(randomUUID()), null);
      const uuid = randomUUID();
      const handle = await start(uuid);
      await h.hv.detachAll();
      await h.corruptSavedHandle(uuid);
      assert.equal(await hv2.recover(uuid), null);
      assert.ok((await hv2.listSaved()).includes(uuid), 'a stale handle is still listed');
      assert.ok(await h.isAlive(handle.pid), 'recover never kills');
      await h.killHard(handle);
    });

    it('rejects a missing kernel with a terminal INVALID_SPEC naming the path, spawning nothing', async () => {
      const uuid = randomUUID();
      const { spec, path } = h.missingKernelSpec();
      let spawned = false;
      const err = await h.hv
        .start({ uuid, name: vmName(uuid), spec }, { onSpawned: () => (spawned = true) })
        .then(() => assert.fail('start succeeded'), (e: unknown) => e);
      assert.ok(err instanceof DroverError);
      assert.equal(err.code, 'INVALID_SPEC');
      assert.ok(isTerminal(err));
      assert.ok(err.message.includes(path), err.message);
      assert.equal(spawned, false);
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
    });

    it("rejects a start the hypervisor refuses with START_FAILED carrying the hypervisor's message", async () => {
      const uuid = randomUUID();
      const { spec, message } = await h.arrangeStartFailure();
      const err = await h.hv
        .start({ uuid, name: vmName(uuid), spec })
        .then(() => assert.fail('start succeeded'), (e: unknown) => e);
      assert.ok(err instanceof DroverError);
      assert.equal(err.code, 'START_FAILED');
      assert.ok(isTerminal(err));
      assert.match(err.message, message);
      assert.deepEqual(h.hv.inspect(uuid), { state: 'absent' });
      await settle();
      assert.equal(log.of(uuid).length, 0, 'a failed start is reported by its rejection only');
    });

    it('destroys only a stopped VM directly under its run root', async () => {
      for (const bad of ['../etc', '/etc', 'not-a-uuid', '', `${randomUUID()}/..`, randomUUID().toUpperCase()]) {
        await assert.rejects(h.hv.destroy(bad), (e: unknown) => e instanceof DroverError && e.code === 'USAGE', bad);
      }
      const uuid = randomUUID();
      await start(uuid);
      await assert.rejects(h.hv.destroy(uuid), (e: unknown) => e instanceof DroverError && e.code === 'CONFLICT');
      assert.ok(await h.runDirExists(uuid));
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      await h.hv.destroy(uuid);
      assert.equal(await h.runDirExists(uuid), false);
      assert.equal((await h.hv.listSaved()).includes(uuid), false);
      await h.hv.destroy(uuid); // already gone: fine
    });

    it('scans a VM it did not start as not managed', async () => {
      const foreign = await h.startForeign();
      try {
        const found = (await h.hv.scan()).find((d) => d.pid === foreign.pid);
        assert.ok(found, 'the foreign VM is listed');
        assert.equal(found.managed, false);
        assert.equal(found.uuid, foreign.uuid);
        assert.equal(found.name, foreign.name);
        assert.ok(found.argv.length > 1);
      } finally {
        await foreign.stop();
      }
    });

    it('migrates a running VM live to another host; a migration that cannot connect leaves it running here', async () => {
      const uuid = randomUUID();
      const spec = h.spec(uuid, 'idle');
      const source = await h.hv.start({ uuid, name: vmName(uuid), spec });
      await h.waitBooted(source);
      await assert.rejects(
        h.hv.migrate(uuid, h.deadMigrationUri, { timeoutMs: 10_000 }),
        (err: unknown) => err instanceof DroverError && err.code === 'MIGRATION_FAILED' && /fail/.test(err.message),
      );
      assert.equal(h.hv.inspect(uuid).state, 'running', 'a failed migration leaves the VM running');

      const other = h.otherHost();
      const target = await other.startIncoming({ uuid, name: vmName(uuid), spec, listenHost: '127.0.0.1' });
      assert.equal(other.inspect(uuid).state, 'incoming');
      assert.match(target.incomingUri ?? '', /^\w+:/);
      assert.equal((await other.startIncoming({ uuid, name: vmName(uuid), spec, listenHost: '127.0.0.1' })).pid, target.pid, 'idempotent');
      const progress: number[] = [];
      await h.hv.migrate(uuid, target.incomingUri!, { timeoutMs: 60_000, onProgress: (p) => progress.push(p.transferred) });
      assert.ok(progress.length > 0 && progress.at(-1)! > 0, 'progress was reported');
      assert.equal(await h.hv.outgoingMigration(uuid), 'completed');
      const deadline = Date.now() + 10_000;
      while (other.inspect(uuid).state !== 'running' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(other.inspect(uuid).state, 'running', 'the target runs the guest');
      assert.equal(h.hv.inspect(uuid).state, 'paused', 'the source is paused for good');
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      await other.stop(uuid, { timeoutMs: 0, force: true });
      assert.equal(other.inspect(uuid).state, 'absent');
    });

    it('snapshots every disk of a running VM at once and of a stopped one from its files; rolls back a stopped one, deleting newer snapshots', async () => {
      const uuid = randomUUID();
      const spec = await h.diskSpec(uuid, ['qcow2', 'qcow2']);
      const target = { uuid, spec };
      const names = async (): Promise<string[][]> => (await h.hv.listSnapshots(target)).map((d) => d.snapshots.map((s) => s.name));
      assert.deepEqual(await names(), [[], []]);
      await h.hv.start({ uuid, name: vmName(uuid), spec });
      const began = Date.now() - 1000;
      await h.hv.createSnapshot(target, 'one');
      await h.hv.createSnapshot(target, 'one'); // idempotent
      await h.hv.createSnapshot(target, 'two');
      const running = await h.hv.listSnapshots(target);
      assert.deepEqual(running.map((d) => [d.index, d.format, d.snapshots.map((s) => s.name)]), [[0, 'qcow2', ['one', 'two']], [1, 'qcow2', ['one', 'two']]]);
      const first = running[0]?.snapshots[0];
      assert.ok(first && first.createdMs >= began && first.createdMs <= Date.now() + 1000, 'stamped with the time it was taken');
      await assert.rejects(h.hv.rollbackSnapshot(target, 'one'), (e: unknown) => e instanceof DroverError && e.code === 'CONFLICT', 'no rollback under a running guest');

      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      assert.deepEqual(await names(), [['one', 'two'], ['one', 'two']], 'the files hold what qemu took');
      await h.hv.createSnapshot(target, 'three');
      assert.deepEqual(await h.hv.rollbackSnapshot(target, 'one'), ['two', 'three']);
      assert.deepEqual(await names(), [['one'], ['one']]);
      await assert.rejects(
        h.hv.rollbackSnapshot(target, 'nope'),
        (e: unknown) => e instanceof DroverError && e.code === 'SNAPSHOT_FAILED' && isTerminal(e) && /^Disk 1 \(.+\) has no snapshot named nope\.$/.test(e.message),
      );
      await h.hv.deleteSnapshot(target, 'one');
      await h.hv.deleteSnapshot(target, 'one'); // idempotent
      assert.deepEqual(await names(), [[], []]);
    });

    it('refuses to snapshot a raw disk with a sentence naming it, running or not, and takes nothing', async () => {
      const uuid = randomUUID();
      const spec = await h.diskSpec(uuid, ['qcow2', 'raw']);
      const raw = spec.disks?.[1]?.path ?? '';
      const target = { uuid, spec };
      const refused = (e: unknown): boolean =>
        e instanceof DroverError && e.code === 'SNAPSHOT_FAILED' && isTerminal(e) && e.message === `Disk 2 (${raw}) is raw, and only qcow2 disks can hold snapshots.`;
      await h.hv.start({ uuid, name: vmName(uuid), spec });
      await assert.rejects(h.hv.createSnapshot(target, 'one'), refused);
      const listed = await h.hv.listSnapshots(target);
      assert.deepEqual(listed.map((d) => [d.format, d.snapshots.length]), [['qcow2', 0], ['raw', 0]], 'all disks or none');
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      await assert.rejects(h.hv.createSnapshot(target, 'one'), refused);
      await assert.rejects(h.hv.rollbackSnapshot(target, 'one'), refused);
      await assert.rejects(
        h.hv.listSnapshots({ uuid, spec: { ...spec, disks: [] } }),
        (e: unknown) => e instanceof DroverError && e.code === 'SNAPSHOT_FAILED' && e.message === 'The VM has no disks to snapshot.',
      );
    });

    it('samples a VM it runs (process, CPU, memory, disks; no network without a tap, no balloon) and nothing else', async () => {
      assert.equal(await h.hv.sample(randomUUID()), null, 'an unknown VM has no sample');
      assert.equal(await h.hv.processUsage(randomUUID()), null);
      const uuid = randomUUID();
      const handle = await h.hv.start({ uuid, name: vmName(uuid), spec: await h.writerSpec(uuid) });
      await h.waitBooted(handle);
      const first = await h.hv.sample(uuid);
      assert.ok(first, 'a running VM has a sample');
      assert.equal(first.uuid, uuid);
      assert.equal(first.pid, handle.pid);
      assert.equal(first.startedAt, handle.startedAt);
      assert.ok(Date.parse(first.bootedAt) >= Date.parse(first.startedAt), 'booted at or after the process start');
      assert.ok(first.cpuSeconds > 0, `a booted guest has used CPU (${first.cpuSeconds} s)`);
      assert.ok(first.rssBytes > 1024 * 1024, `resident memory ${first.rssBytes}`);
      assert.ok(Math.abs(first.at - Date.now()) < 5000);
      assert.equal(first.net, null, 'user-mode or no networking: no host-side counters');
      assert.equal(first.balloonBytes, null, 'no balloon device');
      assert.ok(first.disk, 'block stats over the control channel');
      // The guest keeps writing: the counters rise (and never fall) between samples.
      let later = first;
      const deadline = Date.now() + h.timeouts.boot;
      while (later.disk!.writeOps <= first.disk.writeOps || later.disk!.writeBytes <= first.disk.writeBytes) {
        assert.ok(Date.now() < deadline, `no disk writes seen: ${JSON.stringify(later.disk)}`);
        await settle(250);
        const next = await h.hv.sample(uuid);
        assert.ok(next);
        later = next;
      }
      assert.ok(later.cpuSeconds >= first.cpuSeconds, 'CPU seconds never fall');
      assert.ok(later.disk!.readBytes >= first.disk.readBytes);
      const usage = await h.hv.processUsage(uuid);
      assert.ok(usage && usage.pid === handle.pid && usage.cpuSeconds >= later.cpuSeconds && usage.startedAt === handle.startedAt);
      await h.hv.stop(uuid, { timeoutMs: 0, force: true });
      assert.equal(await h.hv.sample(uuid), null, 'a stopped VM has no sample');
      assert.equal(await h.hv.processUsage(uuid), null);
    });

    it('treats stopping an unknown VM as a no-op', async () => {
      await h.hv.stop(randomUUID(), { timeoutMs: 100, force: false });
      await h.hv.stop(randomUUID(), { timeoutMs: 100, force: true });
    });
  });
}
