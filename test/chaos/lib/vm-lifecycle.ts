/**
 * The load the chaos scenarios put on drover: "lanes" that each take one VM
 * after another through its whole life, every request written as a user's
 * would be, through src/vm-ops (createVmAt, changeStatus: compare-and-swap
 * writes): create -> RUNNING, TO_STOP -> STOP, REQUESTED_START -> RUNNING,
 * REQUESTED_DELETE -> gone, with random pauses between them.
 *
 * Each VM boots the marker guest (initrd-disk-marker.gz) from its own raw
 * disk, so the disk counts the boots independently of drover. After a VM is
 * deleted, `checkVmRun` proves that each request reached its end state
 * exactly once:
 *  - drover's events: one vm.started per start asked, one vm.stopped, one
 *    vm.deleted, and no vm.restarted / vm.crashed / vm.missing / vm.killed /
 *    vm.error (nothing restarted or lost it behind the test's back);
 *  - /proc (QemuWatch): exactly one qemu process per start asked, never two
 *    at once;
 *  - the disk: exactly one boot per start asked, each boot consistent, and
 *    each later boot found the earlier one's last record (it had stopped).
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cluster } from '../../helpers/agent-harness.js';
import type { GuestFiles } from '../../helpers/guest.js';
import { bootProblems, createMarkerDisk, markerBoots, readMarkerDisk, waitForMarkers } from '../../helpers/disk-marker.js';
import { createVmAt } from '../../../src/vm-ops/create-vm.js';
import { changeStatus } from '../../../src/vm-ops/change-status.js';
import type { VmAction } from '../../../src/vm-ops/status-plan.js';
import type { VmStore } from '../../../src/vm-ops/vm-store.js';
import type { JsonObject } from '../../../src/store/vm-repository.js';
import { sleep, type ChaosReport, type Rng } from './chaos-env.js';
import type { EventTap } from './event-tap.js';
import type { QemuWatch } from './qemu-watch.js';

export interface LifecycleDeps {
  cluster: Cluster;
  guest: GuestFiles;
  /** Where the VMs' marker disks go. */
  diskDir: string;
  /** The host each new VM is designated to. */
  host: (lane: number) => string;
  rng: Rng;
  report: ChaosReport;
  watch: QemuWatch;
  tap: EventTap;
  /** The longest pause between two requests to one VM, ms. */
  maxHoldMs?: number;
  /** How long one request may take to reach its end state (agents are being killed meanwhile). */
  requestTimeoutMs?: number;
}

export interface VmRun {
  uuid: string;
  name: string;
  disk: string;
  startsAsked: number;
  stopsAsked: number;
  deleted: boolean;
}

const BAD_EVENTS = new Set(['vm.restarted', 'vm.crashed', 'vm.missing', 'vm.killed', 'vm.error', 'vm.poweroff']);

export function vmStoreOf(cluster: Cluster): VmStore {
  return { keys: cluster.keys, kv: cluster.kv, vms: cluster.repo };
}

/** Polls the record until its status is `status` (or the key is gone, for 'deleted'); an ERROR on the way fails at once. */
async function reach(cluster: Cluster, uuid: string, goal: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const vm = await cluster.getVm(uuid).catch(() => undefined); // etcd away for a moment: poll again
    if (vm !== undefined) {
      if (goal === 'deleted' ? vm === null : vm?.status === goal) return Date.now() - t0;
      if (vm?.status === 'ERROR') throw new Error(`VM ${uuid} went to ERROR on its way to ${goal}: ${String(vm.error)}`);
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`VM ${uuid} did not reach ${goal} within ${timeoutMs} ms; last record: ${JSON.stringify(vm)}`);
    await sleep(100);
  }
}

/** Writes a request through vm-ops, retrying while etcd is away. */
async function ask(store: VmStore, uuid: string, action: VmAction): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await changeStatus(store, { ref: uuid, action, force: false, waitSeconds: null, onProgress: () => undefined });
      return;
    } catch (err) {
      if (attempt >= 50 || !/etcd|unavailable|deadline/i.test(String((err as Error).message))) throw err;
      await sleep(200);
    }
  }
}

async function create(store: VmStore, record: JsonObject): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await createVmAt(store, record);
      return;
    } catch (err) {
      // A create that reached etcd before the error came back is there: not written twice.
      if (/already exists|already used/.test(String((err as Error).message))) return;
      if (attempt >= 50 || !/etcd|unavailable|deadline/i.test(String((err as Error).message))) throw err;
      await sleep(200);
    }
  }
}

/**
 * Waits for the disk to show `boots` boots. On a timeout the error quotes the
 * guest's serial log (the agent's run dir), which tells a guest that never
 * booted or found no disk (DROVER-MARK-NODISK) from one drover did not run.
 */
async function markers(deps: LifecycleDeps, run: VmRun, boots: number, timeoutMs: number): Promise<void> {
  try {
    await waitForMarkers(run.disk, (b) => b.length === boots, timeoutMs, `boot ${boots}'s marker`);
  } catch (err) {
    const vm = await deps.cluster.getVm(run.uuid).catch(() => null);
    const serial = String((vm?.runtime as { serial_log?: string } | undefined)?.serial_log ?? '');
    const tail = serial ? (await readFile(serial, 'latin1').catch(() => '')).split('\n').slice(-4).join(' | ') : '(no serial log)';
    throw new Error(`${(err as Error).message}; VM ${run.name} is ${String(vm?.status)}; its serial log ends: ${tail}`, { cause: err });
  }
}

/** One VM through its life; resolves once its key is gone. */
export async function runOneVm(deps: LifecycleDeps, lane: number, seq: number): Promise<VmRun> {
  const { cluster, rng, report } = deps;
  const store = vmStoreOf(cluster);
  const timeout = deps.requestTimeoutMs ?? 300_000;
  const hold = (): Promise<void> => sleep(rng.int(0, deps.maxHoldMs ?? 1500));
  const name = `chaos-${lane}-${seq}`;
  const disk = join(deps.diskDir, `${name}.raw`);
  await createMarkerDisk(disk);
  const uuid = randomUUID();
  const run: VmRun = { uuid, name, disk, startsAsked: 0, stopsAsked: 0, deleted: false };
  await create(store, {
    uuid,
    name,
    host: deps.host(lane),
    spec: {
      vcpus: 1,
      memory: 96,
      boot: { kernel: deps.guest.kernel, initrd: deps.guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' },
      disks: [{ path: disk, format: 'raw' }],
      vnc: 'none',
    },
  });
  run.startsAsked++;
  report.count('requests');
  report.time('create -> RUNNING', await reach(cluster, uuid, 'RUNNING', timeout));
  await markers(deps, run, 1, timeout);
  await hold();
  await ask(store, uuid, 'stop');
  run.stopsAsked++;
  report.count('requests');
  report.time('TO_STOP -> STOP', await reach(cluster, uuid, 'STOP', timeout));
  await hold();
  await ask(store, uuid, 'start');
  run.startsAsked++;
  report.count('requests');
  report.time('REQUESTED_START -> RUNNING', await reach(cluster, uuid, 'RUNNING', timeout));
  await markers(deps, run, 2, timeout);
  await hold();
  await ask(store, uuid, 'delete');
  report.count('requests');
  report.time('REQUESTED_DELETE -> gone', await reach(cluster, uuid, 'deleted', timeout));
  run.deleted = true;
  report.count('vms cycled');
  return run;
}

/**
 * What went wrong with one finished VM, as sentences (empty: nothing).
 * Call after `tap.sync()` and a `watch.poll()`.
 */
export async function checkVmRun(run: VmRun, tap: EventTap, watch: QemuWatch): Promise<string[]> {
  const problems: string[] = [];
  const events = tap.forVm(run.uuid);
  const count = (code: string): number => events.filter((e) => e.event === code).length;
  const label = `VM ${run.name} (${run.uuid})`;
  if (count('vm.started') !== run.startsAsked) problems.push(`${label}: ${count('vm.started')} vm.started events for ${run.startsAsked} starts asked`);
  if (count('vm.stopped') !== run.stopsAsked) problems.push(`${label}: ${count('vm.stopped')} vm.stopped events for ${run.stopsAsked} stops asked`);
  if (count('vm.deleted') !== (run.deleted ? 1 : 0)) problems.push(`${label}: ${count('vm.deleted')} vm.deleted events`);
  for (const e of events) if (BAD_EVENTS.has(e.event)) problems.push(`${label}: unexpected ${e.event}: ${e.message}`);
  const qemus = watch.forVm(run.uuid);
  if (qemus.length !== run.startsAsked) problems.push(`${label}: ${qemus.length} qemu processes (pids ${qemus.map((q) => q.pid).join(', ')}) for ${run.startsAsked} starts asked`);
  const alive = qemus.filter((q) => q.alive);
  if (run.deleted && alive.length > 0) problems.push(`${label}: deleted, but qemu ${alive.map((q) => q.pid).join(', ')} still runs`);
  const disk = await readMarkerDisk(run.disk);
  if (disk.malformed.length > 0) problems.push(`${label}: ${disk.malformed.length} malformed marker sectors`);
  // In boot order: each boot claims the region after the last one used. (The guests'
  // stamps cannot order boots a second apart: their clocks may disagree by 2 s.)
  const boots = markerBoots(disk.records).sort((a, b) => a.region - b.region);
  if (boots.length !== run.startsAsked) problems.push(`${label}: the disk shows ${boots.length} boots for ${run.startsAsked} starts asked`);
  for (const b of boots) problems.push(...bootProblems(b).map((p) => `${label}: ${p}`));
  for (let i = 1; i < boots.length; i++) {
    const prev = boots[i - 1]!;
    const saw = boots[i]!.seen.get(prev.bootId);
    if (saw !== prev.last.n) problems.push(`${label}: boot ${i + 1} found boot ${i}'s counter at ${saw ?? 'nothing'}, but boot ${i} wrote up to ${prev.last.n}: they overlapped`);
  }
  return problems;
}

/**
 * Runs `lanes` lanes of VM lives until `stop()` says so (each lane finishes
 * the VM it is on); resolves with every VM run.
 */
export async function runLanes(deps: LifecycleDeps, lanes: number, stop: () => boolean): Promise<VmRun[]> {
  const vms: VmRun[] = [];
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      for (let seq = 0; !stop(); seq++) vms.push(await runOneVm(deps, lane, seq));
    }),
  );
  return vms;
}

/** Every problem of every run, once the last events have had `settleMs` to arrive. */
export async function checkVmRuns(runs: readonly VmRun[], tap: EventTap, watch: QemuWatch, settleMs = 2000): Promise<string[]> {
  await sleep(settleMs);
  await tap.sync();
  await watch.poll();
  const problems: string[] = [];
  for (const run of runs) problems.push(...(await checkVmRun(run, tap, watch)));
  problems.push(...watch.overlaps());
  return problems;
}
