import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// Every bench script reads its options through bench/lib/options.ts; these run the real
// scripts (dist/bench/*.js) with options that end before anything is started.
const BENCH = fileURLToPath(new URL('../../bench/', import.meta.url));
const SCRIPTS = ['backup', 'collection', 'failover', 'placement', 'start-latency'];
const run = (script: string, ...args: string[]) => spawnSync(process.execPath, [`${BENCH}${script}.js`, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('bench scripts: options', () => {
  for (const script of SCRIPTS) {
    it(`${script}: --help prints the usage and exits 0`, () => {
      const r = run(script, '--help');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^usage: node dist/bench/${script}\\.js \\[--`));
    });

    it(`${script}: an unknown option is one sentence and the usage on stderr, exit 2, no stack trace`, () => {
      const r = run(script, '--no-such-option');
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^bench: Unknown option '--no-such-option'\nusage: /);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    });
  }

  it('a stray argument is refused the same way', () => {
    const r = run('backup', 'extra');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^bench: Unexpected argument 'extra'/);
  });
});
