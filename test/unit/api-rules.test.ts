/** The API's pure rules, table-tested: roles, admin-only fields, merge patch, paging, history diffs. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { refuseAdminFields, refuseSystemFields } from '../../src/api/admin-fields.js';
import { mergePatch, pageVms } from '../../src/api/list-vms.js';
import type { IndexedVm } from '../../src/api/vm-index.js';
import { diffRecords } from '../../src/api/vm-history.js';
import type { Principal } from '../../src/auth/authenticate.js';
import { effectiveRole, hasPrivilege, roleWithin } from '../../src/auth/privileges.js';
import { ROLES, type Role } from '../../src/contract/roles.js';

const as = (role: Role, user = 'alice'): Principal => ({ user, role, via: 'token' });

describe('roles and privileges', () => {
  it('a token role fits its user role only as a subset of its privileges', () => {
    const fits: Array<[Role, Role, boolean]> = [
      ['admin', 'admin', true],
      ['operator', 'admin', true],
      ['user', 'operator', true],
      ['auditor', 'admin', true],
      ['auditor', 'user', false], // an auditor reads hosts and every VM
      ['user', 'auditor', false], // a user acts
      ['operator', 'user', false],
      ['admin', 'operator', false],
    ];
    for (const [token, user, want] of fits) assert.equal(roleWithin(token, user), want, `${token} within ${user}`);
    assert.equal(effectiveRole('auditor', 'user'), null, 'refused, not widened');
    assert.equal(effectiveRole('user', 'admin'), 'user');
  });

  it('admin has every privilege, auditor no state-changing one, user no migration', () => {
    for (const role of ROLES) assert.equal(hasPrivilege(role, 'VM.Audit'), true, role);
    assert.equal(hasPrivilege('auditor', 'VM.PowerMgmt'), false);
    assert.equal(hasPrivilege('user', 'VM.Migrate'), false);
    assert.equal(hasPrivilege('operator', 'User.Modify'), false);
    assert.equal(hasPrivilege('admin', 'Sys.Admin'), true);
  });
});

describe('admin-only and system fields', () => {
  const spec = { memory: 64, disks: [{ image: 'debian-12' }] };
  it('refuses each admin-only field from a non-admin, naming it, and lets an unchanged one pass', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ owner: 'bob', spec }, 'owner'],
      [{ host: 'hv1', spec }, 'host'],
      [{ pool: 'p', spec }, 'pool'],
      [{ uuid: '00000000-0000-4000-8000-000000000001', spec }, 'uuid'],
      [{ spec: { ...spec, nodes: ['hv1'] } }, 'spec.nodes'],
      [{ spec: { ...spec, nics: [{ network: 'br0' }] } }, 'spec.nics.0.network'],
      [{ spec: { memory: 64, disks: [{ path: '/etc/shadow' }] } }, 'spec.disks.0.path'],
      [{ spec: { memory: 64, boot: { kernel: '/boot/vmlinuz' } } }, 'spec.boot.kernel'],
      [{ spec: { memory: 64, boot: { kernel: '/srv/boot/../../boot/vmlinuz' } } }, 'spec.boot.kernel'],
    ];
    for (const [rec, field] of cases) {
      for (const role of ['user', 'operator', 'auditor'] as const) {
        assert.throws(() => refuseAdminFields(as(role), null, rec, ['/srv/boot']), (e: Error & { field?: string }) => e.field === field, `${role}: ${field}`);
      }
      assert.doesNotThrow(() => refuseAdminFields(as('admin'), null, rec, []), `admin: ${field}`);
    }
    const before = { uuid: 'u', owner: 'alice', host: 'hv1', spec: { memory: 64, disks: [{ path: '/srv/vm.raw' }], nics: [{ network: 'br0' }] } };
    assert.doesNotThrow(() => refuseAdminFields(as('user'), before, { ...before, spec: { ...before.spec, memory: 128 } }, []));
    assert.doesNotThrow(() => refuseAdminFields(as('user'), null, { spec: { memory: 64, boot: { kernel: '/srv/boot/vmlinuz' }, nics: [{ network: 'user' }] } }, ['/srv/boot']));
  });

  it('refuses the fields only drover writes, except a new record that asks for REQUESTED_NEW', () => {
    assert.throws(() => refuseSystemFields(null, { status: 'RUNNING' }), /status/);
    assert.doesNotThrow(() => refuseSystemFields(null, { status: 'REQUESTED_NEW' }));
    assert.throws(() => refuseSystemFields({ status: 'STOP' }, { status: 'REQUESTED_START' }), /actions/);
    assert.doesNotThrow(() => refuseSystemFields({ status: 'STOP', runtime: { pid: 1 } }, { status: 'STOP', runtime: { pid: 1 } }));
    assert.throws(() => refuseSystemFields({ runtime: { pid: 1 } }, { runtime: { pid: 2 } }), /runtime/);
  });
});

describe('merge patch (RFC 7396)', () => {
  it('merges objects, replaces arrays and scalars, removes members set to null', () => {
    const cases: Array<[unknown, unknown, unknown]> = [
      [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
      [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
      [{ a: 'b' }, { a: null }, {}],
      [{ a: ['b'] }, { a: ['c'] }, { a: ['c'] }],
      [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
      [{ a: 'b' }, ['c'], ['c']],
      [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ];
    for (const [target, patch, want] of cases) assert.deepEqual(mergePatch(target, patch), want);
  });
});

describe('paging', () => {
  const vms: IndexedVm[] = ['a', 'b', 'c', 'd', 'e'].map((name, i) => {
    const obj = { uuid: `0000000${i}-0000-4000-8000-000000000000`, name, owner: i % 2 ? 'bob' : 'alice', status: i < 2 ? 'RUNNING' : 'STOP' };
    return { vm: { uuid: obj.uuid, key: '', raw: '', modRevision: '1', parsed: { ok: false, error: '' } }, obj, name, owner: obj.owner };
  });
  const q = { sort: 'name' as const, limit: 2 };
  it('walks every page once with a cursor, in either order, with filters', () => {
    const walk = (query: Parameters<typeof pageVms>[1]) => {
      const out: string[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = pageVms(vms, { ...query, cursor });
        out.push(...page.items.map((o) => String(o.name)));
        if (!page.next_cursor) return { out, total: page.total };
        cursor = page.next_cursor;
      }
    };
    assert.deepEqual(walk(q), { out: ['a', 'b', 'c', 'd', 'e'], total: 5 });
    assert.deepEqual(walk({ ...q, sort: '-name' }).out, ['e', 'd', 'c', 'b', 'a']);
    assert.deepEqual(walk({ ...q, sort: '-status' }).out, ['e', 'd', 'c', 'b', 'a'], 'STOP after RUNNING, then by uuid');
    assert.deepEqual(walk({ ...q, owner: 'bob' }), { out: ['b', 'd'], total: 2 });
    assert.deepEqual(walk({ ...q, q: 'D' }).out, ['d'], 'free text, any case');
    assert.deepEqual(walk({ ...q, q: 'LIC' }).out, ['a', 'c', 'e'], 'free text matches the owner too');
    assert.throws(() => pageVms(vms, { ...q, cursor: 'not-one' }), /cursor/);
  });
});

describe('history diffs', () => {
  it('lists changed fields one level into objects, with old and new values', () => {
    assert.deepEqual(diffRecords({ status: 'STOP', spec: { memory: 64, vcpus: 1 } }, { status: 'RUNNING', spec: { memory: 128, vcpus: 1 } }), [
      { field: 'spec.memory', old: 64, new: 128 },
      { field: 'status', old: 'STOP', new: 'RUNNING' },
    ]);
    assert.deepEqual(diffRecords(null, { name: 'a' }), [{ field: 'name', new: 'a' }]);
    assert.deepEqual(diffRecords({ log: ['x'] }, { log: ['x', 'y'] }), [{ field: 'log', old: ['x'], new: ['x', 'y'] }]);
    assert.deepEqual(diffRecords({ a: 1 }, { a: 1 }), []);
  });
});
