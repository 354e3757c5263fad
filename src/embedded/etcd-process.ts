/**
 * One etcd server as a child process: what `drover up` runs for a laptop and
 * what every test suite runs for itself (a free loopback port, its own data
 * dir). The data dir is created readable by its owner only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { DroverError } from '../lib/errors.js';

export interface EtcdProcessOptions {
  dataDir: string;
  /** Client port on 127.0.0.1; 0 picks a free one. */
  clientPort?: number;
  /** Peer port on 127.0.0.1; 0 picks a free one. */
  peerPort?: number;
  /** The etcd binary; `etcd` on PATH by default. */
  binary?: string;
  /** Where etcd's own output goes; a file in the data dir's parent by default. */
  logFile?: string;
  name?: string;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export class EtcdProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  clientPort = 0;
  peerPort = 0;

  constructor(private readonly opts: EtcdProcessOptions) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.clientPort}`;
  }

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts etcd and resolves once it answers its health endpoint. */
  async start(timeoutMs = 20_000): Promise<void> {
    if (this.child) return;
    await mkdir(this.opts.dataDir, { recursive: true, mode: 0o700 });
    if (!this.clientPort) this.clientPort = this.opts.clientPort || (await freePort());
    if (!this.peerPort) this.peerPort = this.opts.peerPort || (await freePort());
    const client = `http://127.0.0.1:${this.clientPort}`;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const name = this.opts.name ?? 'drover';
    const argv = [
      '--name', name,
      '--data-dir', this.opts.dataDir,
      '--listen-client-urls', client,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `${name}=${peer}`,
      '--initial-cluster-state', 'new',
      '--auto-compaction-mode', 'revision',
      '--auto-compaction-retention', '10000',
    ];
    await this.killStale();
    const log = await open(this.opts.logFile ?? join(this.opts.dataDir, '..', 'etcd.log'), 'a', 0o600);
    const binary = this.opts.binary ?? 'etcd';
    // Its own process group: a Ctrl-C in the terminal reaches only drover,
    // which then stops the agent before etcd, in that order.
    const child = spawn(binary, argv, { stdio: ['ignore', log.fd, log.fd], detached: true });
    this.child = child;
    const killOnExit = (): void => void child.kill('SIGKILL');
    process.once('exit', killOnExit);
    if (child.pid) await writeFile(this.pidFile, `${child.pid}\n`, { mode: 0o600 });
    let spawnError: Error | null = null;
    this.exited = new Promise((resolve) => {
      child.once('error', (err) => {
        spawnError = err;
        this.child = null;
        resolve();
      });
      child.once('exit', () => {
        process.off('exit', killOnExit);
        this.child = null;
        void rm(this.pidFile, { force: true });
        resolve();
      });
    });
    await log.close();
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (spawnError) {
        const code = (spawnError as NodeJS.ErrnoException).code;
        throw new DroverError('SPAWN_FAILED', code === 'ENOENT'
          ? `The etcd binary ${binary} was not found; install Debian's etcd-server package.`
          : `etcd could not be started: ${(spawnError as Error).message}.`);
      }
      if (!this.child) throw new DroverError('SPAWN_FAILED', `etcd exited during start-up; see ${this.opts.logFile ?? 'etcd.log'}.`);
      try {
        const res = await fetch(`${client}/health`, { signal: AbortSignal.timeout(500) });
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.stop();
    throw new DroverError('TIMEOUT', `etcd did not become healthy within ${timeoutMs} ms.`);
  }

  private get pidFile(): string {
    return `${this.opts.dataDir}.pid`;
  }

  /** An etcd left on this data dir by a drover that was killed (-9) is stopped first. */
  private async killStale(): Promise<void> {
    const pid = Number((await readFile(this.pidFile, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('etcd') && cmdline.includes(this.opts.dataDir)) {
      process.kill(pid, 'SIGTERM');
      for (let i = 0; i < 100 && (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')) !== ''; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await rm(this.pidFile, { force: true });
  }

  /** SIGTERM, then SIGKILL after 5 s. Ports are kept so start() reuses them. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}
