/**
 * The state dir's one-agent lock (agent.pid) against real processes. The
 * chaos suite (test/chaos/agent-kills.chaos.ts) found that after enough
 * kill -9 restarts the pid of a dead agent is reused, by a qemu or another
 * agent whose argv mentions "drover", and the next agent refused to start:
 * the lock now also compares the process start time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStateDir } from '../../src/agent/state-dir.js';
import { readStartTime } from '../../src/hypervisor/qemu/proc.js';

describe('state dir lock (agent.pid, real processes)', () => {
  let dir: string;
  let impostor: ChildProcess;
  let impostorStart: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'drover-statedir-'));
    // A live process whose argv says "drover", as a qemu with a VM under a drover state dir does.
    impostor = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'drover-impostor'], { stdio: 'ignore' });
    await new Promise((r) => impostor.once('spawn', r));
    impostorStart = (await readStartTime(impostor.pid!))!;
  });
  after(async () => {
    impostor?.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it('writes its own pid and process start time', async () => {
    const root = join(dir, 'own');
    await openStateDir(root);
    assert.equal((await readFile(join(root, 'agent.pid'), 'utf8')).trim(), `${process.pid} ${await readStartTime(process.pid)}`);
  });

  it('a dead agent\'s pid now held by another process (pid reuse) does not lock the state dir', async () => {
    const root = join(dir, 'reused');
    await openStateDir(root);
    await writeFile(join(root, 'agent.pid'), `${impostor.pid} ${impostorStart - 1}\n`);
    const opened = await openStateDir(root);
    assert.equal(opened.root, root);
  });

  it('a live agent (same pid and start time) still locks it', async () => {
    const root = join(dir, 'live');
    await openStateDir(root);
    await writeFile(join(root, 'agent.pid'), `${impostor.pid} ${impostorStart}\n`);
    await assert.rejects(openStateDir(root), /Another drover agent \(pid \d+\) is using the state dir/);
  });

  it('an agent.pid without a start time (an older agent) falls back to the argv check', async () => {
    const root = join(dir, 'old');
    await openStateDir(root);
    await writeFile(join(root, 'agent.pid'), `${impostor.pid}\n`);
    await assert.rejects(openStateDir(root), /Another drover agent/);
  });
});
