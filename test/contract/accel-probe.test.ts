/**
 * The accelerator probe against real qemu. The probe guest must pass under
 * TCG (that proves the probe itself works); under KVM it may pass or time out
 * depending on the host, and either way `auto` must say why it chose.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { kvmAccessible, probeAccel, probeBootSector, runAccelProbe } from '../../src/hypervisor/accel-probe.js';
import { DroverError } from '../../src/lib/errors.js';

describe('accel probe', () => {
  it('builds a 512-byte boot sector with the 0x55AA signature', () => {
    const s = probeBootSector();
    assert.equal(s.length, 512);
    assert.deepEqual([...s.subarray(0, 5)], [0xb0, 0x31, 0xe6, 0xf4, 0xf4]);
    assert.deepEqual([s[510], s[511]], [0x55, 0xaa]);
  });

  it('runs the probe guest to its exit code under TCG', async () => {
    const result = await runAccelProbe('tcg', { timeoutMs: 10_000 });
    assert.equal(result.ok, true, result.reason);
    assert.match(result.reason, /^TCG probe guest finished in \d+ ms\.$/);
  });

  it('reports a probe that cannot finish in time', async () => {
    const result = await runAccelProbe('tcg', { timeoutMs: 1 });
    assert.equal(result.ok, false);
    assert.equal(result.reason, 'TCG probe guest did not finish within 1 ms.');
  });

  it('reports a missing qemu binary', async () => {
    const result = await runAccelProbe('tcg', { qemuBinary: '/nonexistent/qemu' });
    assert.equal(result.ok, false);
    assert.match(result.reason, /could not run \/nonexistent\/qemu/);
  });

  it('honours explicit choices without probing, and refuses kvm without the device', async () => {
    assert.deepEqual(await probeAccel('tcg'), { accel: 'tcg', reason: 'TCG was requested.' });
    await assert.rejects(probeAccel('kvm', { kvmDevice: '/nonexistent/kvm' }), (e: unknown) => e instanceof DroverError && e.code === 'CONFIG_INVALID' && /\/nonexistent\/kvm/.test(e.message));
    assert.deepEqual(await probeAccel('auto', { kvmDevice: '/nonexistent/kvm' }), { accel: 'tcg', reason: '/nonexistent/kvm is missing or not accessible; using TCG.' });
  });

  it('auto picks an accelerator and says why', async (t) => {
    const choice = await probeAccel('auto', { timeoutMs: 3000 });
    t.diagnostic(`auto: ${choice.accel} (${choice.reason})`);
    if (!(await kvmAccessible())) assert.equal(choice.accel, 'tcg');
    else if (choice.accel === 'tcg') assert.match(choice.reason, /^(KVM probe guest did not finish within 3000 ms|KVM probe guest exited with code .*); using TCG\.$/);
    else assert.match(choice.reason, /^The KVM probe guest ran in \d+ ms; using KVM\.$/);
  });
});
