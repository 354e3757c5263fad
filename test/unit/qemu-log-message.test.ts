import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lastLogLine, lastLogMessage } from '../../src/hypervisor/qemu/run-dir.js';

describe("qemu's last error message from its log", () => {
  const cases: Array<[string, string, string]> = [
    [
      'a lock refusal over two lines (qemu 7.2) becomes one message naming the disk',
      'some earlier line\nqemu-system-x86_64: -blockdev driver=file,node-name=disk0-file,filename=/s/a.raw: Failed to get "write" lock\nIs another process using the image [/s/a.raw]?\n',
      'qemu-system-x86_64: -blockdev driver=file,node-name=disk0-file,filename=/s/a.raw: Failed to get "write" lock. Is another process using the image [/s/a.raw]?',
    ],
    ['a one-line error stays as it is', 'qemu: invalid kernel header\n', 'qemu: invalid kernel header'],
    ['a last line with no qemu prefix before it is taken alone', 'random\nsomething else\n', 'something else'],
    ['an empty log gives nothing', '', ''],
  ];
  for (const [name, log, expected] of cases) {
    it(name, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'drover-log-'));
      try {
        const path = join(dir, 'qemu.log');
        await writeFile(path, log);
        assert.equal(await lastLogMessage(path), expected);
        assert.equal(await lastLogLine(path), log.trim().split('\n').at(-1) ?? '');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
