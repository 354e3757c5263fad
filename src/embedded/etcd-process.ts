/**
 * One etcd server as a child process: what `drover up` runs for a laptop and
 * what every test suite runs for itself (a free loopback port, its own data
 * dir). The data dir is created readable by its owner only.
 *
 * With `tls` (drover up, the tests) clients and peers speak TLS only and
 * must present a certificate signed by the PKI's CA (--client-cert-auth):
 * a plain-HTTP or certificate-less client is refused at the handshake.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { DroverError } from '../lib/errors.js';
import { pkiFiles } from '../security/pki.js';

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
  /** A PKI dir (drover pki init): serve TLS with its `etcd` certificate and require client certificates from its CA. */
  tlsDir?: string;
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
    return `${this.scheme}://127.0.0.1:${this.clientPort}`;
  }

  private get scheme(): 'http' | 'https' {
    return this.opts.tlsDir ? 'https' : 'http';
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
    const client = `${this.scheme}://127.0.0.1:${this.clientPort}`;
    const peer = `${this.scheme}://127.0.0.1:${this.peerPort}`;
    const tls = this.opts.tlsDir ? pkiFiles(this.opts.tlsDir, 'etcd') : null;
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
      ...(tls
        ? [
            '--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth',
            '--peer-cert-file', tls.cert, '--peer-key-file', tls.key, '--peer-trusted-ca-file', tls.ca, '--peer-client-cert-auth',
          ]
        : []),
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
      if (await this.healthy(`${client}/health`, tls)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.stop();
    throw new DroverError('TIMEOUT', `etcd did not become healthy within ${timeoutMs} ms.`);
  }

  /** etcd's /health answers; over TLS with the server's own certificate (it is also a client certificate of the CA). */
  private async healthy(url: string, tls: { ca: string; cert: string; key: string } | null): Promise<boolean> {
    if (!tls) {
      try {
        return (await fetch(url, { signal: AbortSignal.timeout(500) })).ok;
      } catch {
        return false;
      }
    }
    const creds = { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
    return new Promise((resolve) => {
      const req = request(url, { ...creds, servername: 'localhost', timeout: 500 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
      req.end();
    });
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
