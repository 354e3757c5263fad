import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DroverEvent } from '../../src/contract/event.js';
import type { StoredEvent } from '../../src/store/event-log.js';
import { EventLog } from '../../src/store/event-log.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { cluster, lines, spawnDrover, uuidWith, vmRecord, type Cluster, stdoutText } from './helpers.js';

const WEB = uuidWith('f0f00000');
const DB = uuidWith('f1f10000');
const GONE = uuidWith('f2f20000'); // deleted: only its events remain

function ev(ts: string, vm: string | undefined, level: DroverEvent['level'], code: DroverEvent['event'], message: string): DroverEvent {
  return { ts, host: 'hv1', ...(vm ? { vm } : {}), level, event: code, message };
}


/** Two VMs, one deleted VM and a host event, over an hour. */
async function history(c: Cluster): Promise<EventLog> {
  await c.putVm(vmRecord(WEB, 'web-1'));
  await c.putVm(vmRecord(DB, 'db-1'));
  const log = new EventLog(c.kv, c.keys);
  const hourAgo = Date.now() - 3600_000;
  const at = (min: number) => new Date(hourAgo + min * 60_000).toISOString();
  await log.append(ev(at(0), undefined, 'info', 'host.up', 'Agent hv1 is up.'));
  await log.append(ev(at(1), WEB, 'info', 'vm.started', 'Started web-1.'));
  await log.append(ev(at(2), GONE, 'info', 'vm.deleted', 'Deleted.'));
  await log.append(ev(at(50), DB, 'error', 'vm.crashed', 'qemu died (signal 9).'));
  await log.append(ev(at(55), WEB, 'warn', 'vm.missing', 'web-1 was not running.'));
  return log;
}

describe('drover vm events (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('prints the whole log oldest first with a VM column, and narrows it by VM, level, count and time', async () => {
    const c = cluster(etcd);
    await history(c);
    const all = lines(stdoutText(await c.drover(['vm', 'events'])));
    assert.equal(all.length, 5);
    assert.match(all[0]!, /^\S+Z {2}hv1 {2}INFO {2}host\.up {2}- {2}Agent hv1 is up\.$/);
    assert.match(all[1]!, /^\S+Z {2}hv1 {2}INFO {2}vm\.started {2}web-1 {2}Started web-1\.$/);
    assert.match(all[2]!, new RegExp(`INFO {2}vm\\.deleted {2}${GONE} {2}Deleted\\.$`));
    assert.deepEqual(all.map((l) => l.split('  ')[3]), ['host.up', 'vm.started', 'vm.deleted', 'vm.crashed', 'vm.missing']);

    // One VM (by name): no VM column.
    const web = lines(stdoutText(await c.drover(['vm', 'events', 'web-1'])));
    assert.deepEqual(web.map((l) => l.split('  ').slice(1)), [['hv1', 'INFO', 'vm.started', 'Started web-1.'], ['hv1', 'WARN', 'vm.missing', 'web-1 was not running.']]);
    // A deleted VM by its full uuid.
    assert.match(stdoutText(await c.drover(['vm', 'events', GONE])), /vm\.deleted {2}Deleted\.\n$/);
    // Minimum level, the last N, a start time.
    assert.deepEqual(lines(stdoutText(await c.drover(['vm', 'events', '--level', 'warn']))).map((l) => l.split('  ')[3]), ['vm.crashed', 'vm.missing']);
    assert.deepEqual(lines(stdoutText(await c.drover(['vm', 'events', '-n', '2']))).map((l) => l.split('  ')[3]), ['vm.crashed', 'vm.missing']);
    assert.deepEqual(lines(stdoutText(await c.drover(['vm', 'events', '--since', '30m']))).map((l) => l.split('  ')[3]), ['vm.crashed', 'vm.missing']);
    assert.equal(stdoutText(await c.drover(['vm', 'events', '--level', 'error', 'web-1'])), '');

    // NDJSON: one stored event per line, with its id.
    const json = lines(stdoutText(await c.drover(['vm', 'events', 'db-1', '--json']))).map((l) => JSON.parse(l) as StoredEvent);
    assert.equal(json.length, 1);
    assert.equal(json[0]!.event, 'vm.crashed');
    assert.equal(json[0]!.vm, DB);
    assert.match(json[0]!.id, /^\d{15}-[0-9a-f]{10}$/);
  });

  it('refuses a bad level, count or time, and an unknown VM, with one sentence', async () => {
    const c = cluster(etcd);
    const level = await c.drover(['vm', 'events', '--level', 'debug']);
    assert.equal(level.code, 2);
    assert.match(level.stderr, /^drover: option '-l, --level <level>' argument 'debug' is invalid; allowed choices are info, warn, error; see `drover vm events --help`\.\n$/);
    const since = await c.drover(['vm', 'events', '--since', 'last tuesday']);
    assert.equal(since.code, 2);
    assert.equal(since.stderr, 'drover: Option --since "last tuesday" must be an ISO time (2026-11-22T09:00:00Z) or an age like 10m, 2h or 1d.\n');
    assert.equal((await c.drover(['vm', 'events', '-n', 'x'])).code, 2);
    const vm = await c.drover(['vm', 'events', 'nope']);
    assert.equal(vm.code, 1);
    assert.equal(vm.stderr, 'drover: No VM matches "nope".\n');
  });

  it('-f prints the existing events, then each event written after it started, once, until Ctrl-C', async (t) => {
    const c = cluster(etcd);
    const log = await history(c);
    const follow = spawnDrover(['vm', 'events', '-f', '-n', '1', '--etcd', etcd.endpoint, '--prefix', c.prefix]);
    t.after(() => follow.kill());
    await follow.waitFor(/vm\.missing .*\n/);
    assert.equal(lines(follow.stdout()).length, 1);
    await log.append(ev(new Date().toISOString(), DB, 'info', 'vm.restarted', 'Restarted db-1.'));
    await log.append(ev(new Date().toISOString(), undefined, 'info', 'agent.resync', 'Resynced.'));
    // A VM created after the command started is shown by name too.
    const NEW = uuidWith('f3f30000');
    await c.putVm(vmRecord(NEW, 'new-1'));
    await log.append(ev(new Date().toISOString(), NEW, 'info', 'vm.started', 'Started new-1.'));
    await follow.waitFor(/vm\.started {2}new-1 {2}Started new-1\.\n/);
    assert.equal(await follow.interrupt(), 0, follow.stderr());
    assert.deepEqual(lines(follow.stdout()).map((l) => l.split('  ').slice(3, 5)), [
      ['vm.missing', 'web-1'],
      ['vm.restarted', 'db-1'],
      ['agent.resync', '-'],
      ['vm.started', 'new-1'],
    ]);
    assert.equal(follow.stderr(), '');
  });

  it('-f with a VM and a level and --json follows only matching events, one JSON object per line', async (t) => {
    const c = cluster(etcd);
    const log = await history(c);
    const follow = spawnDrover(['vm', 'events', '-f', '-n', '1', 'web-1', '--level', 'warn', '--json', '--etcd', etcd.endpoint, '--prefix', c.prefix]);
    t.after(() => follow.kill());
    // The last existing match is printed once the listing is read; events written after it must come through the watch.
    await follow.waitFor(/"message":"web-1 was not running\."/);
    await log.append(ev(new Date().toISOString(), WEB, 'info', 'vm.restarted', 'Too low a level.'));
    await log.append(ev(new Date().toISOString(), DB, 'error', 'vm.crashed', 'Another VM.'));
    await log.append(ev(new Date().toISOString(), WEB, 'error', 'vm.crashed', 'Shown.'));
    await follow.waitFor(/"message":"Shown\."/);
    assert.equal(await follow.interrupt(), 0, follow.stderr());
    const got = lines(follow.stdout()).map((l) => JSON.parse(l) as StoredEvent);
    assert.deepEqual(got.map((e) => [e.vm, e.event, e.message]), [[WEB, 'vm.missing', 'web-1 was not running.'], [WEB, 'vm.crashed', 'Shown.']]);
  });
});
