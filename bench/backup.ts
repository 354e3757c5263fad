/**
 * Backup and restore throughput (issue 4), `make bench-backup` or
 * `node dist/bench/backup.js [--size MIB] [--runs N] [--chunk MIB]
 * [--parallel N] [--max-parallel N] [--preload N] [--json FILE]
 * [--endpoint URL [--bucket NAME] [--region R]]`.
 *
 * `--endpoint` runs the same contenders against an S3-compatible server of
 * your own (MinIO, Ceph RGW; path-style addressing) instead of s3rver: the
 * bucket (default `bench`) must exist, the credentials come from
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and the server's CPU is not
 * measured (n/a). Each run deletes what it wrote: drover's backup
 * (`drover backup delete`) and awscli's `bench-backup/aws/disk.raw`.
 *
 * One raw disk file of `--size` MiB (default 2048) of random bytes, the disk
 * of a STOP VM record in a real etcd. s3rver runs in its own Node process
 * (bench/lib/s3rver-process.ts) on loopback, storing under the same temp
 * dir, on the same filesystem as the disk, the restored copies and awscli's
 * download. Cache state: warm for everyone. The file is read once before the
 * first run, and every object a download reads was written just before it,
 * so every contender reads from the page cache (nothing is ever dropped).
 * Memory: before each transfer a scratch file of twice the size is written
 * and removed, so every client writes into guest pages the host has backed
 * (see primeMemory below: on this VM that alone can cost 3 s per GiB).
 * Each run, in the same cache state:
 *   floor    `cat FILE` to /dev/null: reading the disk end to end
 *   upload   `drover vm backup VM` (bin/drover, a subprocess)
 *            vs `aws s3 cp FILE s3://bucket/key` (awscli's defaults)
 *   restore  `drover vm restore VM ID` (over the VM's disk, sha256 checked)
 *            vs `aws s3 cp s3://bucket/key FILE`
 * Odd runs run drover first in each direction, even runs awscli first. For
 * every transfer the client's CPU (cutime+cstime of this process, which
 * waits for it) and s3rver's CPU (/proc/PID/stat) are printed beside the wall
 * time, which shows who the bottleneck is. Medians over the runs are held
 * against the targets: drover >= aws s3 cp, and >= 70% of the read floor.
 * Also printed once, as context (not a target): the disk device's own read
 * rate (`dd iflag=direct`, bypassing the cache). Exits 0 unless something broke.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { keySpace } from '../src/contract/keys.js';
import { DEFAULT_BACKUP_TRANSFER } from '../src/storage/backup-settings.js';
import { VmRepository } from '../src/store/vm-repository.js';
import { runDrover } from '../test/cli/helpers.js';
import { S3RVER_CREDENTIALS } from '../test/helpers/s3-server.js';
import { startBenchEtcd } from './lib/bench-etcd.js';
import { Cleanup } from './lib/cleanup.js';
import { clockTicksPerSecond, cpuTicks, machineInfo } from './lib/procfs.js';
import { startS3rverProc } from './lib/s3rver-process.js';
import { benchOptions, usageError } from './lib/options.js';
import { table } from './lib/stats.js';

const MiB = 1024 * 1024;
const PREFIX = '/bench-backup';
const FLOOR_SHARE = 0.7;

const values = benchOptions(
  'node dist/bench/backup.js [--size MIB] [--runs N] [--chunk MIB] [--parallel N] [--max-parallel N] [--preload N] [--json FILE] [--endpoint URL [--bucket NAME] [--region R]]',
  {
    size: { type: 'string', default: '2048' },
    runs: { type: 'string', default: '3' },
    chunk: { type: 'string' },
    parallel: { type: 'string' },
    'max-parallel': { type: 'string' },
    preload: { type: 'string' },
    json: { type: 'string' },
    endpoint: { type: 'string' },
    bucket: { type: 'string' },
    region: { type: 'string' },
  },
);

function positive(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usageError(`--${name} must be a positive integer, not ${JSON.stringify(v)}.`);
  return n;
}

const sizeMiB = positive('size', values.size) as number;
const runs = positive('runs', values.runs) as number;
const chunkMiB = positive('chunk', values.chunk);
const parallel = positive('parallel', values.parallel);
const maxParallel = positive('max-parallel', values['max-parallel']);
const preload = positive('preload', values.preload);

/** Where the objects go: s3rver started here (default), or the server at --endpoint. */
const external = values.endpoint;
if (external === undefined && (values.bucket !== undefined || values.region !== undefined)) usageError('--bucket and --region go with --endpoint.');
if (external !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(external)) usageError(`--endpoint must be an http(s) URL like http://127.0.0.1:9000, not ${JSON.stringify(external)}.`);
const credentials = external === undefined ? S3RVER_CREDENTIALS : { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? '', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? '' };
if (!credentials.accessKeyId || !credentials.secretAccessKey) usageError('--endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment.');
const BUCKET = values.bucket ?? 'bench';
const REGION = values.region ?? 'us-east-1';

/** The transfer keys drover's CLI reads from its environment (docs/backups.md), only those given. */
const transferEnv: Record<string, string> = {
  ...(chunkMiB !== undefined ? { DROVER_S3_UPLOAD_CHUNK_SIZE: String(chunkMiB * MiB), DROVER_S3_DOWNLOAD_CHUNK_SIZE: String(chunkMiB * MiB) } : {}),
  ...(parallel !== undefined ? { DROVER_PARALLEL_UPLOADS: String(parallel), DROVER_PARALLEL_DOWNLOADS: String(parallel) } : {}),
  ...(maxParallel !== undefined ? { DROVER_MAX_PARALLEL_UPLOADS: String(maxParallel), DROVER_MAX_PARALLEL_DOWNLOADS: String(maxParallel) } : {}),
  ...(preload !== undefined ? { DROVER_PRELOAD: String(preload) } : {}),
};
const t = {
  chunk: (chunkMiB ?? DEFAULT_BACKUP_TRANSFER.s3_upload_chunk_size / MiB),
  parallel: parallel ?? DEFAULT_BACKUP_TRANSFER.parallel_uploads,
  maxParallel: maxParallel ?? DEFAULT_BACKUP_TRANSFER.max_parallel_uploads,
  preload: preload ?? DEFAULT_BACKUP_TRANSFER.preload,
};

const log = (line = ''): void => void process.stdout.write(`${line}\n`);
/** CPU seconds for display; n/a for a server this bench cannot see (--endpoint). */
const cpu = (seconds: number, unit = ' s'): string => (Number.isNaN(seconds) ? 'n/a' : `${seconds.toFixed(2)}${unit}`);

/** cutime + cstime of this process: the CPU of the children it has waited for, in ticks. */
async function childrenTicks(): Promise<number> {
  const text = await readFile('/proc/self/stat', 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 1).trim().split(/\s+/);
  return Number(rest[16 - 3]) + Number(rest[17 - 3]);
}

function runQuiet(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

interface Sample {
  seconds: number;
  clientCpu: number;
  serverCpu: number;
}

type Contender = 'floor' | 'drover up' | 'aws up' | 'drover down' | 'aws down' | 'aws fsync';

async function main(): Promise<void> {
  const cleanup = new Cleanup().onSignals();
  const hz = await clockTicksPerSecond();
  try {
    const root = await mkdtemp(join(tmpdir(), 'drover-bench-backup-'));
    cleanup.add('remove the temp dir', () => rm(root, { recursive: true, force: true }));
    const file = join(root, 'disk.raw');
    log(`writing ${sizeMiB} MiB of random bytes to ${file}`);
    const hash = createHash('sha256');
    const fh = await open(file, 'w');
    for (let i = 0; i < sizeMiB; i++) {
      const b = randomBytes(MiB);
      hash.update(b);
      await fh.write(b);
    }
    await fh.close();
    const sha256 = hash.digest('hex');

    const { endpoint: etcdEndpoint, kv } = await startBenchEtcd(root, cleanup);
    const repo = new VmRepository(kv, keySpace(PREFIX));
    const uuid = randomUUID();
    const vm = 'bench-disk';
    if (!(await repo.create(uuid, { uuid, name: vm, host: 'bench', status: 'STOP', spec: { vcpus: 1, memory: 128, disks: [{ path: file, format: 'raw' }] } }))) {
      throw new Error(`VM ${uuid} already exists`);
    }

    const s3dir = join(root, 's3');
    let s3: { endpoint: string; pid?: number };
    if (external === undefined) {
      await mkdir(s3dir);
      const proc = await startS3rverProc(s3dir, BUCKET);
      cleanup.add('stop s3rver', () => proc.stop());
      s3 = proc;
    } else {
      s3 = { endpoint: external.replace(/\/$/, '') };
    }
    /** The server's CPU ticks, when it is our s3rver (NaN for a server elsewhere). */
    const serverTicks = async (): Promise<number> => (s3.pid === undefined ? Number.NaN : ((await cpuTicks(s3.pid)) ?? Number.NaN));
    const droverEnv = {
      DROVER_ETCD: etcdEndpoint,
      DROVER_PREFIX: PREFIX,
      DROVER_S3_ENDPOINT: s3.endpoint,
      DROVER_S3_BUCKET: BUCKET,
      DROVER_S3_PATH_STYLE: '1',
      DROVER_S3_REGION: REGION,
      DROVER_S3_ACCESS_KEY_ID: credentials.accessKeyId,
      DROVER_S3_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      ...transferEnv,
    };
    // awscli uses path-style addressing with --endpoint-url; no config file or profile is read.
    const awsEnv = { PATH: process.env.PATH, HOME: root, AWS_CONFIG_FILE: '/dev/null', AWS_DEFAULT_REGION: REGION, AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey };
    /** Runs one contender, returning wall time and the CPU of the client and of s3rver. */
    const measure = async (what: string, fn: () => Promise<void>): Promise<Sample> => {
      const c0 = await childrenTicks();
      const s0 = await serverTicks();
      const t0 = performance.now();
      await fn();
      const seconds = (performance.now() - t0) / 1000;
      const s1 = await serverTicks();
      const c1 = await childrenTicks();
      const sample = { seconds, clientCpu: (c1 - c0) / hz, serverCpu: (s1 - s0) / hz };
      log(`  ${what.padEnd(12)} ${sample.seconds.toFixed(2).padStart(7)} s ${(sizeMiB / sample.seconds).toFixed(1).padStart(8)} MiB/s   client CPU ${sample.clientCpu.toFixed(2)} s, server CPU ${cpu(sample.serverCpu)}`);
      return sample;
    };
    const must = async (p: Promise<{ code: number; stderr: string }>, what: string): Promise<string> => {
      const r = await p;
      if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' / ')}`);
      return 'stdout' in r ? String(r.stdout) : '';
    };
    const drover = (args: string[]): Promise<string> => must(runDrover(args, { env: droverEnv, timeoutMs: 3_600_000 }), `drover ${args.join(' ')}`);
    const aws = (args: string[]): Promise<string> => must(runQuiet('aws', ['--endpoint-url', s3.endpoint, ...args], awsEnv), `aws ${args.join(' ')}`);
    const cat = (): Promise<string> => must(runQuiet('cat', [file]), 'cat');
    // Memory state, the same for every transfer: this VM's balloon hands guest
    // pages that stayed free for some seconds back to the host, and writing
    // into such pages again costs ~3 s of system CPU per GiB (dd of 1 GiB: 3.5 s
    // into them, 0.45 s into pages freed just before). Unequalised, that cost
    // went to whichever client did not follow a freshly removed file. So
    // before each transfer, outside its timing, a scratch file of twice the
    // size (room for the server's parts and object, or a restore's partial
    // file) is written and removed: every client writes into backed pages.
    const scratch = join(root, 'scratch');
    const primeMemory = async (): Promise<void> => {
      await must(runQuiet('dd', ['if=/dev/zero', `of=${scratch}`, 'bs=4M', `count=${Math.ceil((2 * sizeMiB) / 4)}`]), 'dd');
      await rm(scratch);
    };

    const info = await machineInfo('qemu-system-x86_64', fileURLToPath(new URL('../../', import.meta.url)));
    log(`machine: ${info.cpuModel}, ${info.cores} cores, ${info.ramMiB} MiB, ${info.kernel}, node ${info.node}, drover ${info.drover}`);
    log(`size ${sizeMiB} MiB, ${runs} runs; drover: chunk ${t.chunk} MiB, parallel ${t.parallel}..${t.maxParallel}, preload ${t.preload}; ${(await runQuiet('aws', ['--version'])).code === 0 ? 'awscli defaults' : 'awscli missing'}`);
    log(`${s3.pid === undefined ? `S3 server at ${s3.endpoint} (--endpoint), bucket ${BUCKET}` : `s3rver pid ${s3.pid} at ${s3.endpoint}, data in ${s3dir}`}; cache: warm for everyone (read once first, nothing dropped)`);
    const dd = await measure('dd direct', () => must(runQuiet('dd', [`if=${file}`, 'of=/dev/null', 'bs=4M', 'iflag=direct']), 'dd').then(() => undefined));
    await cat(); // warm the cache
    log();

    const samples = new Map<Contender, Sample[]>();
    const push = (c: Contender, s: Sample): void => void samples.set(c, [...(samples.get(c) ?? []), s]);
    const awsCopy = join(root, 'aws-restored');
    for (let run = 1; run <= runs; run++) {
      const droverFirst = run % 2 === 1;
      log(`run ${run}/${runs} (${droverFirst ? 'drover' : 'awscli'} first)`);
      push('floor', await measure('floor (cat)', () => cat().then(() => undefined)));
      let id = '';
      const droverUp = async (): Promise<void> => push('drover up', await measure('drover up', async () => void (id = (await drover(['vm', 'backup', vm])).trim())));
      const awsUp = async (): Promise<void> => push('aws up', await measure('aws up', async () => void (await aws(['s3', 'cp', '--only-show-errors', file, `s3://${BUCKET}/bench-backup/aws/disk.raw`]))));
      const droverDown = async (): Promise<void> => push('drover down', await measure('drover down', async () => void (await drover(['vm', 'restore', vm, id]))));
      const awsDown = async (): Promise<void> => {
        push('aws down', await measure('aws down', async () => void (await aws(['s3', 'cp', '--only-show-errors', `s3://${BUCKET}/bench-backup/aws/disk.raw`, awsCopy]))));
        // drover's restore ends with an fsync of the disk before it renames it into place; awscli's does not.
        push('aws fsync', await measure('fsync (aws)', async () => void (await must(runQuiet('sync', [awsCopy]), 'sync'))));
      };
      for (const step of droverFirst ? [droverUp, awsUp, droverDown, awsDown] : [awsUp, droverUp, awsDown, droverDown]) {
        await primeMemory();
        await step();
      }
      // Outside the timing: both restored copies are the original bytes (drover checked its own sha256 too).
      const [mine, theirs] = await Promise.all([sha256File(file), sha256File(awsCopy)]);
      if (mine !== sha256 || theirs !== sha256) throw new Error(`a restored copy differs from the original (drover ${mine === sha256}, aws ${theirs === sha256})`);
      await drover(['backup', 'delete', id]);
      await aws(['s3', 'rm', '--only-show-errors', `s3://${BUCKET}/bench-backup/aws/disk.raw`]);
      await rm(awsCopy);
    }

    const median = (c: Contender): Sample => {
      const xs = [...(samples.get(c) ?? [])].sort((a, b) => a.seconds - b.seconds);
      return xs[Math.floor((xs.length - 1) / 2)] as Sample;
    };
    const rate = (s: Sample): number => sizeMiB / s.seconds;
    const floor = median('floor');
    log();
    log(`medians of ${runs} runs (${sizeMiB} MiB)`);
    log(
      table([
        ['', 'seconds', 'MiB/s', 'client CPU s', 'server CPU s', 'vs aws', 'vs floor'],
        ['disk device, uncached (dd iflag=direct), context', dd.seconds.toFixed(2), rate(dd).toFixed(1), '', '', '', ''],
        ...(['floor', 'drover up', 'aws up', 'drover down', 'aws down'] as const).map((c) => {
          const s = median(c);
          const other = c === 'drover up' ? median('aws up') : c === 'drover down' ? median('aws down') : null;
          return [
            c === 'floor' ? 'read floor (cat, warm cache)' : c,
            s.seconds.toFixed(2),
            rate(s).toFixed(1),
            s.clientCpu.toFixed(2),
            c === 'floor' ? '' : cpu(s.serverCpu, ''),
            other ? `${(other.seconds / s.seconds).toFixed(2)}x` : '',
            c === 'floor' ? '' : `${((floor.seconds / s.seconds) * 100).toFixed(1)}%`,
          ];
        }),
      ]),
    );
    const fsync = median('aws fsync');
    const awsDurable = median('aws down').seconds + fsync.seconds;
    log(`like for like on restore: aws s3 cp download + fsync of the file (sync FILE, ${fsync.seconds.toFixed(2)} s) ${awsDurable.toFixed(2)} s, ${(sizeMiB / awsDurable).toFixed(1)} MiB/s: drover ${(awsDurable / median('drover down').seconds).toFixed(2)}x`);
    log();
    const verdicts: Array<[string, boolean, string]> = [];
    for (const [dir, mine, theirs] of [['backup', 'drover up', 'aws up'], ['restore', 'drover down', 'aws down']] as const) {
      const m = median(mine);
      const a = median(theirs);
      verdicts.push([`${dir}: drover >= aws s3 cp`, m.seconds <= a.seconds, `${rate(m).toFixed(1)} vs ${rate(a).toFixed(1)} MiB/s`]);
      verdicts.push([`${dir}: drover >= ${FLOOR_SHARE * 100}% of the read floor`, rate(m) >= FLOOR_SHARE * rate(floor), `${((rate(m) / rate(floor)) * 100).toFixed(1)}% of ${rate(floor).toFixed(0)} MiB/s`]);
    }
    log(table([['target', 'verdict', ''], ...verdicts.map(([what, ok, detail]) => [what, ok ? 'PASS' : 'FAIL', detail])]));
    if (values.json) {
      await writeFile(values.json, JSON.stringify({ machine: info, sizeMiB, runs, transfer: t, dd, samples: Object.fromEntries(samples), verdicts }, null, 2));
    }
  } finally {
    await cleanup.run();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
