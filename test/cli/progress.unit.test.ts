/** The byte progress bar: its line, redraws on a terminal, plain lines elsewhere. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { formatBytes, formatDuration, formatProgressLine, ProgressBar } from '../../src/cli/output/progress.js';

const MIB = 1024 * 1024;

function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('progress', () => {
  it('formats sizes, durations and a line with bar, percent, bytes, rate and ETA', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(200 * MIB), '200.0 MiB');
    assert.equal(formatDuration(3), '0:03');
    assert.equal(formatDuration(3725), '1:02:05');
    assert.equal(
      formatProgressLine({ label: 'upload debian-12', bytes: 96 * MIB, total: 200 * MIB, rate: 32 * MIB }),
      'upload debian-12  [=========>          ]   48%  96.0 MiB/200.0 MiB  32.0 MiB/s  ETA 0:03',
    );
    assert.equal(formatProgressLine({ label: 'x', bytes: 10, total: 10, rate: 5 }, 4), 'x  [====]  100%  10 B/10 B  5 B/s');
    assert.equal(formatProgressLine({ label: 'download', bytes: 3 * MIB }), 'download  3.0 MiB  -/s');
  });

  it('redraws one line in place on a terminal, at most every 100 ms, then prints a summary', () => {
    const out = sink();
    let t = 0;
    const bar = new ProgressBar({ label: 'up', total: 10 * MIB, stream: out.stream, tty: true, now: () => t });
    for (let i = 1; i <= 10; i++) {
      t += 50;
      bar.update(i * MIB);
    }
    t = 1000;
    bar.done();
    const text = out.text();
    const draws = text.split('\r\x1b[K').filter((s) => s !== '');
    assert.equal(draws.length, 6, JSON.stringify(draws)); // 5 redraws (every 100 ms of 500) + the summary
    assert.equal(draws[0], 'up  [====>               ]   20%  2.0 MiB/10.0 MiB  -/s');
    assert.equal(draws[2], 'up  [============>       ]   60%  6.0 MiB/10.0 MiB  20.0 MiB/s  ETA 0:00');
    assert.equal(draws.at(-1), 'up  10.0 MiB  10.0 MiB/s  0:01  done\n');
    assert.ok(!text.slice(0, -1).includes('\n'), 'no newline before the summary');
  });

  it('writes plain lines at every 10% when not on a terminal', () => {
    const out = sink();
    let t = 0;
    const bar = new ProgressBar({ label: 'up', total: 100, stream: out.stream, now: () => t });
    for (let b = 1; b <= 100; b++) {
      t += 10;
      bar.update(b);
    }
    bar.done();
    const lines = out.text().trim().split('\n');
    assert.equal(lines.length, 11, lines.join('\n'));
    assert.equal(lines[0], 'up  1%  1 B/100 B  -/s');
    assert.match(lines[5]!, /^up {2}50% {2}50 B\/100 B {2}100 B\/s {2}ETA 0:01$/);
    assert.match(lines[10]!, /^up {2}100 B {2}100 B\/s {2}0:01 {2}done$/);
    assert.ok(!out.text().includes('\r'));
  });
});
