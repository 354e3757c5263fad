import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { envLayer, loadAgentConfig, mergeConfigLayers } from '../../src/config/load-config.js';

const base = { source: 'base', values: { name: 'hv1', state_dir: '/var/lib/drover' } };

describe('config merge (pure)', () => {
  it('fills defaults and freezes the result', () => {
    const c = mergeConfigLayers([base]);
    assert.equal(c.resync_interval, 300);
    assert.equal(c.stop_timeout, 60);
    assert.equal(c.accel, 'auto');
    assert.deepEqual(c.etcd, ['http://127.0.0.1:2379']);
    assert.equal(Object.isFrozen(c), true);
  });

  it('later layers win: file < environment < flags', () => {
    const c = mergeConfigLayers([
      { source: 'file', values: { ...base.values, accel: 'kvm', resync_interval: 10 } },
      envLayer({ DROVER_ACCEL: 'tcg', DROVER_ETCD: 'http://a:2379, http://b:2379' }),
      { source: 'the command line', values: { accel: 'auto', name: undefined } },
    ]);
    assert.equal(c.accel, 'auto');
    assert.equal(c.resync_interval, 10);
    assert.equal(c.name, 'hv1', 'an unset flag does not erase a value');
    assert.deepEqual(c.etcd, ['http://a:2379', 'http://b:2379']);
  });

  it('names the key and its source for a bad value', () => {
    assert.throws(
      () => mergeConfigLayers([base, { source: '/etc/drover.toml', values: { stop_timeout: 'soon' } }]),
      /Config key "stop_timeout" in \/etc\/drover.toml is invalid/,
    );
    assert.throws(() => mergeConfigLayers([base, { source: 'x', values: { accel: 'hvf' } }]), /"accel"/);
  });

  it('rejects unknown keys and says what a renamed key is now called', () => {
    assert.throws(() => mergeConfigLayers([base, { source: 'f.toml', values: { colour: 'blue' } }]), /Config key "colour" in f.toml is not known/);
    assert.throws(() => mergeConfigLayers([base, { source: 'f.toml', values: { resync: 5 } }]), /use "resync_interval" instead/);
  });

  it('says which required key is missing', () => {
    assert.throws(() => mergeConfigLayers([{ source: 'f', values: { state_dir: '/x' } }]), /Config key "name" is required/);
  });

  it('refuses a hostile host name', () => {
    assert.throws(() => mergeConfigLayers([base, { source: 'flags', values: { name: '../../etc' } }]), /"name"/);
  });
});

describe('config files', () => {
  it('reads TOML, then FILE.d/*.toml in alphanumeric order (later wins)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-conf-'));
    try {
      const file = join(dir, 'drover.toml');
      await writeFile(file, 'name = "hv1"\nstate_dir = "/srv/drover"\nresync_interval = 60\nnotify_email = ["a@example.test"]\n');
      await mkdir(`${file}.d`);
      await writeFile(join(`${file}.d`, '20-b.toml'), 'resync_interval = 20\n');
      await writeFile(join(`${file}.d`, '10-a.toml'), 'resync_interval = 10\nstop_timeout = 5\n');
      await writeFile(join(`${file}.d`, 'ignored.txt'), 'resync_interval = 99\n');
      const c = await loadAgentConfig({ file, env: {}, flags: {} });
      assert.equal(c.resync_interval, 20);
      assert.equal(c.stop_timeout, 5);
      assert.deepEqual(c.notify_email, ['a@example.test']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('accepts the shipped drover.toml.example', async () => {
    const { fileURLToPath } = await import('node:url');
    const example = fileURLToPath(new URL('../../../drover.toml.example', import.meta.url));
    const c = await loadAgentConfig({ file: example, env: {}, flags: {} });
    assert.equal(c.name, 'hv1');
    assert.equal(c.foreign_vms, 'report');
  });

  it('reports a TOML syntax error with the file name', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-conf-'));
    try {
      const file = join(dir, 'bad.toml');
      await writeFile(file, 'name = "hv1\n');
      await assert.rejects(loadAgentConfig({ file, env: {}, flags: {} }), /bad.toml is not valid TOML/);
      await assert.rejects(loadAgentConfig({ file: join(dir, 'missing.toml'), env: {}, flags: {} }), /cannot be read/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
