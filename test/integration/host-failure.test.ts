/**
 * A host that dies (its agent and its qemu killed with -9, as in a power
 * loss): its lease expires, the scheduler (running inside the surviving
 * agents) marks it DEAD, and its VMs end in KILLED with a reason, or run
 * again on another host when spec.failover is set.
 *
 * Every failover VM boots the marker guest (initrd-disk-marker.gz) from a
 * raw disk in a directory all agents list in `shared_storage`, so both
 * copies open the same file and qemu's image locking (fencing layer 3) is
 * armed. After each failover the disk itself is the proof that the two
 * copies never ran at once (test/helpers/disk-marker.ts): exactly two boots
 * wrote it, each consistently; the second, when it booted, saw the first's
 * last record, and the first wrote nothing after that; and by the guests'
 * clocks the second wrote its first record more than the clocks' tolerance
 * (2.2 s) after the first wrote its last, which was before the new qemu was
 * spawned. Together with "the new qemu started after the old pid died",
 * that is the "no two qemu ever ran the VM at once".
 */
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { killQemusUnder, pidAlive, startCluster, waitUntil, type AgentProcess, type Cluster } from '../helpers/agent-harness.js';
import { ensureGuest, type GuestFiles } from '../helpers/guest.js';
import { assertSequentialBoots, createMarkerDisk, GUEST_CLOCK_AHEAD_MS, GUEST_CLOCK_BEHIND_MS, liveQemus, markerVmSpec, ofdLocksOn, readMarkerDisk, waitForMarkers, type MarkerBoot } from '../helpers/disk-marker.js';

const pidOf = (vm: Record<string, unknown> | null): number => (vm?.runtime as { pid: number }).pid;
const startedAtOf = (vm: Record<string, unknown> | null): number => Date.parse(String((vm?.runtime as { started_at: string }).started_at));
/** Records each copy must have written before the test acts on it (about 1 s of the guest's life). */
const MIN_RECORDS = 3;

describe('host failure (real etcd, real qemu, two agents with schedulers)', () => {
  let etcd: TestEtcd;
  let cluster: Cluster;
  let guest: GuestFiles;
  let shared: string;
  let fleetConfig: Record<string, unknown>;
  let hv1: AgentProcess;

  before(async () => {
    guest = await ensureGuest();
    etcd = await startTestEtcd();
    cluster = await startCluster(etcd);
    shared = join(cluster.dir, 'shared');
    await mkdir(shared);
    // failover_margin: the scheduler waits 4 s past a lease's expiry, so a fenced copy (killed at
    // 2/3 of the 6 s TTL) stops at least 6 s before the new one spawns: far more than the 2.2 s
    // by which the two guests' clocks may disagree (a 1 s margin left as little as 1.6 s of
    // guest-clock gap in one CI run under load).
    fleetConfig = { scheduler: true, election_ttl: 2, failover_margin: 4, lease_ttl: 6, shared_storage: [shared] };
    hv1 = await cluster.startAgent('hv1', { config: fleetConfig });
    await cluster.startAgent('hv2', { config: fleetConfig });
  });
  after(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  /** A failover VM booting the marker guest from its own raw disk on the shared storage. */
  async function markerVm(name: string, host: string, nodes?: string[]): Promise<{ uuid: string; disk: string }> {
    const disk = join(shared, `${name}.raw`);
    await createMarkerDisk(disk);
    const spec = { ...markerVmSpec(guest, disk), ...(nodes ? { nodes } : {}) };
    return { uuid: await cluster.createVm({ name, spec }, host), disk };
  }

  /** Waits for the first copy's records, and checks that qemu holds its image locks on the shared disk. */
  async function firstCopyWriting(disk: string): Promise<MarkerBoot> {
    const [boot] = await waitForMarkers(disk, (b) => b.length === 1 && b[0]!.records.length >= MIN_RECORDS, 60_000, `${MIN_RECORDS} records of the first copy`);
    assert.ok((await ofdLocksOn(disk)).length > 0, 'the running qemu holds OFD locks on its shared disk (layer 3 is armed)');
    return boot!;
  }

  /**
   * Waits for the second copy's records, then checks the disk
   * (assertSequentialBoots: two boots, the second saw the first's last
   * record and nothing came after it, and by the guests' clocks the first
   * stopped before the second began), that the first boot is the copy that
   * ran before the failure, and the guest clocks against the host's events:
   * the old copy's last record was stamped before its qemu's death as the
   * host saw it, and before the new qemu was even spawned; the new copy's
   * first record after its spawn.
   */
  async function proveOneAfterTheOther(t: TestContext, disk: string, first: MarkerBoot, oldGoneAt: number, newStartedAt: number): Promise<void> {
    await waitForMarkers(disk, (b) => b.length >= 2 && b.every((x) => x.records.length >= MIN_RECORDS), 60_000, `${MIN_RECORDS} records of the second copy`);
    // The host's side of the story goes into any failure below, so a failing run says where the time went.
    const host = `host clock: old qemu seen gone at ${oldGoneAt}, new qemu spawned at ${newStartedAt} (${newStartedAt - oldGoneAt} ms later)`;
    try {
      const proof = assertSequentialBoots(await readMarkerDisk(disk), 2);
      const [old, next] = proof.boots as [MarkerBoot, MarkerBoot];
      assert.equal(old.bootId, first.bootId, 'the earlier boot is the copy that ran before the failure');
      assert.ok(old.last.ms - GUEST_CLOCK_AHEAD_MS <= oldGoneAt, `the old copy's last record (${old.last.ms}) predates its qemu's death as the host saw it`);
      assert.ok(old.last.ms + GUEST_CLOCK_BEHIND_MS < newStartedAt, `the old copy's last record (${old.last.ms}) predates the new qemu's spawn`);
      assert.ok(next.first.ms + GUEST_CLOCK_BEHIND_MS >= newStartedAt, `the new copy's first record (${next.first.ms}) follows its qemu's spawn`);
      t.diagnostic(
        `disk: old copy records 0..${old.last.n}, new copy 0..${next.last.n} (it saw the old one's ${next.seen.get(old.bootId)}); ` +
          `old's last -> new's first ${proof.gapsMs[0]} ms by the guests' clocks; old qemu seen gone -> new qemu spawned ${newStartedAt - oldGoneAt} ms`,
      );
    } catch (err) {
      if (err instanceof assert.AssertionError) err.message += `; ${host}`;
      throw err;
    }
  }

  it('a VM without a host is placed by the scheduler and runs there', async () => {
    const uuid = await cluster.createVm({ name: 'placed', spec: { nodes: ['hv2'] } }, '');
    const vm = await cluster.waitForStatus(uuid, 'RUNNING', 60_000);
    assert.equal(vm.host, 'hv2');
    assert.ok((vm.log as string[]).some((l) => / - scheduled on hv2$/.test(l)));
  });

  it('power loss of hv1: its plain VM is KILLED with a reason, its failover VM runs on hv2 within 30 s, never on both', async (t) => {
    const plain = await cluster.createVm({ name: 'plain' }, 'hv1');
    const ha = await markerVm('ha', 'hv1');
    const plainPid = pidOf(await cluster.waitForStatus(plain, 'RUNNING'));
    const haPid = pidOf(await cluster.waitForStatus(ha.uuid, 'RUNNING'));
    const first = await firstCopyWriting(ha.disk);
    // Power loss: the agent and its VMs die at once.
    await hv1.kill('SIGKILL');
    await killQemusUnder(hv1.stateDir);
    const t0 = Date.now();
    await waitUntil(async () => (pidAlive(plainPid) || pidAlive(haPid) ? undefined : true), 5000, 'hv1\'s qemus gone');
    const goneAt = Date.now();

    const moved = await cluster.waitForVm(ha.uuid, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the failover VM running on hv2');
    const took = Date.now() - t0;
    assert.ok(took < 30_000, `failover took ${took} ms`);
    assert.ok((moved?.log as string[]).some((l) => /failed over from hv1/.test(l)));
    assert.ok(startedAtOf(moved) > t0, 'hv2 started it after hv1\'s qemu was killed');
    await proveOneAfterTheOther(t, ha.disk, first, goneAt, startedAtOf(moved));

    const killed = await cluster.waitForStatus(plain, 'KILLED', 15_000);
    assert.match(String(killed.error), /Host hv1 died/);
    assert.equal(killed.host, 'hv1', 'a plain VM stays designated to its host');
    const host = await waitUntil(async () => {
      const e = await cluster.kv.get(cluster.keys.host('hv1'));
      const rec = e ? (JSON.parse(e.raw) as { status: string }) : null;
      return rec?.status === 'DEAD' ? rec : undefined;
    }, 10_000, 'hv1 DEAD');
    assert.equal(host.status, 'DEAD');
    await cluster.waitForEvent((e) => e.event === 'host.down' && e.host === 'hv1', 5000, 'host.down');
  });

  it('hv3 cut off from etcd while it and its qemu live on: it fences its failover VM, which then runs on hv2, never on both at once', async (t) => {
    const { startTcpProxy } = await import('../helpers/tcp-proxy.js');
    const url = new URL(etcd.endpoint);
    const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port) });
    try {
      const hv3 = await cluster.startAgent('hv3', { config: { ...fleetConfig, scheduler: false }, etcd: proxy.url });
      const vm = await markerVm('cutoff', 'hv3', ['hv2', 'hv3']);
      const oldPid = pidOf(await cluster.waitForStatus(vm.uuid, 'RUNNING'));
      const first = await firstCopyWriting(vm.disk);
      proxy.suspend();
      const t0 = Date.now();
      // Self-fencing: hv3 kills its failover VM once its lease is unconfirmed for 2/3 of the TTL.
      await waitUntil(async () => (pidAlive(oldPid) ? undefined : true), 15_000, 'hv3 to fence its VM');
      const fencedAt = Date.now();
      const moved = await cluster.waitForVm(vm.uuid, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the VM running on hv2');
      const startedAt = startedAtOf(moved);
      assert.ok(startedAt > fencedAt - 200, `hv2 started it (${new Date(startedAt).toISOString()}) only after hv3 had fenced it (${new Date(fencedAt).toISOString()})`);
      assert.ok(Date.now() - t0 < 30_000, `failover took ${Date.now() - t0} ms`);
      assert.equal(hv3.child.exitCode, null, 'hv3 kept running');
      // The network comes back: hv3 does not start its old copy again (a third boot on the disk would show it).
      proxy.resume();
      await new Promise((r) => setTimeout(r, 6000));
      const after = await cluster.getVm(vm.uuid);
      assert.equal(after?.host, 'hv2');
      assert.equal((await liveQemus(vm.uuid)).length, 1, 'exactly one qemu runs the VM');
      await proveOneAfterTheOther(t, vm.disk, first, fencedAt, startedAt);
    } finally {
      await proxy.close();
    }
  });

  it('hv4 frozen with SIGSTOP while its qemu runs on: the watchdog fences the failover VM, which then runs on hv2, never on both', async (t) => {
    const hv4 = await cluster.startAgent('hv4', { config: { ...fleetConfig, scheduler: false } });
    const vm = await markerVm('frozen', 'hv4', ['hv2', 'hv4']);
    const oldPid = pidOf(await cluster.waitForStatus(vm.uuid, 'RUNNING'));
    const first = await firstCopyWriting(vm.disk); // also long enough for the watchdog to see it in the fence file
    hv4.child.kill('SIGSTOP');
    let fencedAt: number;
    let startedAt: number;
    try {
      const t0 = Date.now();
      await waitUntil(async () => (pidAlive(oldPid) ? undefined : true), 15_000, 'the watchdog to fence the VM');
      fencedAt = Date.now();
      const moved = await cluster.waitForVm(vm.uuid, (v) => v?.status === 'RUNNING' && v.host === 'hv2', 30_000, 'the VM running on hv2');
      startedAt = startedAtOf(moved);
      assert.ok(startedAt > fencedAt - 200, 'hv2 started it only after the watchdog had killed the old copy');
      assert.ok(Date.now() - t0 < 30_000, `failover took ${Date.now() - t0} ms`);
    } finally {
      hv4.child.kill('SIGCONT');
    }
    // The agent wakes up: it must not start a second copy (a third boot on the disk would show it).
    await new Promise((r) => setTimeout(r, 6000));
    const after = await cluster.getVm(vm.uuid);
    assert.equal(after?.host, 'hv2');
    assert.equal(after?.status, 'RUNNING');
    assert.equal((await liveQemus(vm.uuid)).length, 1, 'exactly one qemu runs the VM');
    await proveOneAfterTheOther(t, vm.disk, first, fencedAt, startedAt);
  });
});
