/** The component roles' grants (src/security/etcd-roles.ts), as a table of what each may and may not touch. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { keySpace } from '../../src/contract/keys.js';
import { allows, grantsFor, roleName } from '../../src/security/etcd-roles.js';

const keys = keySpace('/v1');
const host = grantsFor(keys, { kind: 'host', name: 'hv1' });
const scheduler = grantsFor(keys, { kind: 'scheduler' });
const api = grantsFor(keys, { kind: 'api' });

describe('etcd roles', () => {
  it('a host writes its own host record, liveness, stats and console tickets, and no other host\'s', () => {
    for (const key of ['/v1/host/hv1', '/v1/alive/hv1', '/v1/stats/hv1', '/v1/console/hv1/abc']) assert.ok(allows(host, key, 'Write'), key);
    for (const key of ['/v1/host/hv2', '/v1/alive/hv2', '/v1/stats/hv2', '/v1/console/hv2/abc', '/v1/host/hv10', '/v1/pool/p', '/v1/image/i', '/v1/config/image_store']) {
      assert.ok(!allows(host, key, 'Write'), `${key} is not writable by hv1`);
    }
    assert.ok(!allows(host, '/v1/console/hv10/abc', 'Read'), "hv1's ticket prefix does not cover hv10's");
  });

  it('a host reads nothing under P/auth/, and neither does the scheduler; the API does', () => {
    for (const key of ['/v1/auth/user/alice', '/v1/auth/token/t', '/v1/auth/session/s', '/v1/auth/ticket/x']) {
      assert.ok(!allows(host, key, 'Read'), `host reads ${key}`);
      assert.ok(!allows(scheduler, key, 'Read'), `scheduler reads ${key}`);
      assert.ok(allows(api, key, 'Read') && allows(api, key, 'Write'), `api uses ${key}`);
    }
  });

  it('the scheduler writes VMs, pools, events, host records (a dead host) and its election, and no liveness, stats or setting', () => {
    for (const key of ['/v1/vm/u', '/v1/pool/p', '/v1/log/1', '/v1/election/scheduler/1', '/v1/host/hv1']) assert.ok(allows(scheduler, key, 'Write'), key);
    for (const key of ['/v1/alive/hv1', '/v1/stats/hv1', '/v1/config/image_store', '/v1/image/i']) assert.ok(!allows(scheduler, key, 'Write'), key);
    for (const key of ['/v1/host/hv1', '/v1/alive/hv1', '/v1/vm/u', '/v1/pool/p']) assert.ok(allows(scheduler, key, 'Read'), key);
  });

  it('the API reads the whole prefix but never writes liveness, stats or the election', () => {
    assert.ok(allows(api, '/v1/alive/hv1', 'Read'));
    for (const key of ['/v1/alive/hv1', '/v1/stats/hv1', '/v1/election/scheduler/1']) assert.ok(!allows(api, key, 'Write'), key);
    assert.ok(!allows(api, '/v2/vm/u', 'Read'), 'another prefix is out of reach');
  });

  it('names roles per prefix, so one etcd serves several clusters', () => {
    assert.equal(roleName(keys, 'host-hv1'), 'drover:/v1:host-hv1');
    assert.notEqual(roleName(keySpace('/a'), 'api'), roleName(keySpace('/b'), 'api'));
  });
});
