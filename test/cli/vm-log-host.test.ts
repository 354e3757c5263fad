import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { DroverEvent } from '../../src/contract/event.js';
import { EventLog } from '../../src/store/event-log.js';
import { startTestEtcd, type TestEtcd } from '../helpers/etcd.js';
import { hostRecord, putHost } from './fleet-fixture.js';
import { cluster, lines, stdoutJson, uuidWith, vmRecord } from './helpers.js';

const UUID = uuidWith('7c7c0000');
const OTHER = uuidWith('8d8d0000');

function event(vm: string, ts: string, code: DroverEvent['event'], message: string): DroverEvent {
  return { ts, host: 'hv1', vm, level: code === 'vm.crashed' ? 'warn' : 'info', event: code, message };
}

describe('drover vm log and drover host (real etcd, real bin/drover)', { concurrency: true }, () => {
  let etcd: TestEtcd;
  before(async () => {
    etcd = await startTestEtcd();
  });
  after(async () => etcd.close());

  it('vm log shows the record log, then only this VM\'s events, oldest first', async () => {
    const c = cluster(etcd);
    await c.putVm(vmRecord(UUID, 'web-1', { log: ['2026-11-22T09:00:00Z - started on hv1'] }));
    const events = new EventLog(c.kv, c.keys);
    await events.append(event(UUID, '2026-11-22T09:00:00.000Z', 'vm.started', 'Started on hv1.'));
    await events.append(event(OTHER, '2026-11-22T09:00:01.000Z', 'vm.started', 'Someone else.'));
    await events.append(event(UUID, '2026-11-22T09:00:02.000Z', 'vm.crashed', 'qemu died (signal 9).'));
    const res = await c.drover(['vm', 'log', 'web-1']);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(lines(res.stdout), [
      `Record log of VM web-1 (${UUID}):`,
      '  2026-11-22T09:00:00Z - started on hv1',
      `Events of VM web-1 (${UUID}):`,
      '  2026-11-22T09:00:00.000Z  hv1  INFO  vm.started  Started on hv1.',
      '  2026-11-22T09:00:02.000Z  hv1  WARN  vm.crashed  qemu died (signal 9).',
    ]);
    const json = stdoutJson<{ log: string[]; events: DroverEvent[] }>(await c.drover(['vm', 'log', UUID.slice(0, 6), '--json']));
    assert.deepEqual(json.log, ['2026-11-22T09:00:00Z - started on hv1']);
    assert.deepEqual(json.events.map((e) => e.event), ['vm.started', 'vm.crashed']);
  });

  it('host list shows ALIVE only when the record says so and the alive key exists', async () => {
    const c = cluster(etcd);
    await putHost(c, hostRecord('hv1', 'ALIVE'), true);
    await putHost(c, hostRecord('hv2', 'ALIVE'), false); // agent gone: lease expired, record stale
    await putHost(c, hostRecord('hv3', 'DEAD'), true);
    await c.kv.put(c.keys.host('hv4'), 'garbage');
    const res = await c.drover(['host', 'list']);
    assert.equal(res.code, 0, res.stderr);
    const rows = lines(res.stdout).map((l) => l.split(/\s+/));
    assert.deepEqual(rows[0], ['NAME', 'STATUS', 'IP', 'CPUS', 'MEMORY', 'FREE_MEMORY', 'VMS', 'VERSION', 'HEARTBEAT_AT']);
    assert.deepEqual(rows[1], ['hv1', 'ALIVE', '10.0.0.1', '8', '16384', '12000', '2', '0.1.0', '2026-11-22T09:00:00.000Z']);
    assert.deepEqual(rows.slice(2).map((r) => [r[0], r[1]]), [['hv2', 'DEAD'], ['hv3', 'DEAD'], ['hv4', 'DEAD']]);

    const json = stdoutJson<{ name: string; status: string; alive: boolean }[]>(await c.drover(['host', 'list', '--json']));
    assert.deepEqual(json.map((h) => [h.name, h.status, h.alive]), [['hv1', 'ALIVE', true], ['hv2', 'DEAD', false], ['hv3', 'DEAD', true], ['hv4', 'DEAD', false]]);
  });

  it('host get prints one host with its lease-aware status, and fails for an unknown one', async () => {
    const c = cluster(etcd);
    await putHost(c, hostRecord('hv1', 'ALIVE', { accel: 'kvm' }), false);
    const res = await c.drover(['host', 'get', 'hv1']);
    assert.equal(res.code, 0, res.stderr);
    const h = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.equal(h.status, 'DEAD');
    assert.equal(h.accel, 'kvm');
    const missing = await c.drover(['host', 'get', 'hv9']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'drover: No host is named "hv9".\n');
  });
});
