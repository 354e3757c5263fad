/**
 * Backup and restore throughput (issue 4): one file of `--size` MiB
 * (default 2048) of random bytes, then, in one run and the same cache state
 * (the file was just written, nothing dropped):
 *   floor    reading the file end to end (`cat FILE`, output to /dev/null)
 *   upload   drover's multipart upload (drover's defaults unless flags say)
 *            vs `aws s3 cp FILE s3://...` (awscli's defaults)
 *   restore  drover's ranged download (sha256 checked) vs `aws s3 cp s3://... FILE`
 * against a local s3rver on loopback. s3rver runs in this process, so
 * drover's transfers share this process's core with the server while
 * awscli runs in its own process: the comparison is, if anything, unfair to
 * drover. `node dist/bench/backup.js [--size MIB] [--chunk MIB]`.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_BACKUP_TRANSFER } from '../src/storage/backup-settings.js';
import { downloadFileMultipart } from '../src/storage/s3/multipart-download.js';
import { uploadFileMultipart } from '../src/storage/s3/multipart-upload.js';
import { startTestS3 } from '../test/helpers/s3-server.js';

const MiB = 1024 * 1024;
const { values } = parseArgs({ options: { size: { type: 'string', default: '2048' }, chunk: { type: 'string' } } });
const sizeMiB = Number(values.size);
const t = { ...DEFAULT_BACKUP_TRANSFER, ...(values.chunk !== undefined ? { s3_upload_chunk_size: Number(values.chunk) * MiB, s3_download_chunk_size: Number(values.chunk) * MiB } : {}) };

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

function catToNull(file: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('cat', [file], { stdio: ['ignore', 'ignore', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cat exited ${code}`))));
  });
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-bench-backup-'));
  const s3 = await startTestS3('bench');
  try {
    const file = join(dir, 'disk.raw');
    const hash = createHash('sha256');
    const fh = await open(file, 'w');
    for (let i = 0; i < sizeMiB; i++) {
      const b = randomBytes(MiB);
      hash.update(b);
      await fh.write(b);
    }
    await fh.close();
    const sha256 = hash.digest('hex');
    const aws = async (args: string[]): Promise<void> => {
      const r = await s3.aws(args);
      if (r.code !== 0) throw new Error(`aws ${args.join(' ')} failed: ${r.stderr.trim()}`);
    };
    const floor = await timed(() => catToNull(file));
    const up = await timed(() =>
      uploadFileMultipart({ client: s3.client, bucket: s3.bucket, key: 'bench/drover', file, chunkSize: t.s3_upload_chunk_size, parallel: t.parallel_uploads, maxParallel: t.max_parallel_uploads }),
    );
    const awsUp = await timed(() => aws(['s3', 'cp', '--only-show-errors', file, `s3://${s3.bucket}/bench/aws`]));
    const down = await timed(() =>
      downloadFileMultipart({
        client: s3.client, bucket: s3.bucket, key: 'bench/drover', dest: join(dir, 'restored'), sha256,
        chunkSize: t.s3_download_chunk_size, parallel: t.parallel_downloads, maxParallel: t.max_parallel_downloads, preload: t.preload,
      }),
    );
    const awsDown = await timed(() => aws(['s3', 'cp', '--only-show-errors', `s3://${s3.bucket}/bench/aws`, join(dir, 'aws-restored')]));
    const rate = (s: number): string => `${(sizeMiB / s).toFixed(1)} MiB/s`;
    const rows: Array<[string, number]> = [['read floor (cat)', floor], ['drover backup (upload)', up], ['aws s3 cp (upload)', awsUp], ['drover restore (download)', down], ['aws s3 cp (download)', awsDown]];
    process.stdout.write(`size ${sizeMiB} MiB, chunk ${t.s3_upload_chunk_size / MiB} MiB, parallel ${t.parallel_uploads}..${t.max_parallel_uploads}, preload ${t.preload}\n`);
    for (const [name, s] of rows) process.stdout.write(`${name.padEnd(28)} ${s.toFixed(2).padStart(8)} s  ${rate(s)}\n`);
    process.stdout.write(`drover/aws upload ${(awsUp / up).toFixed(2)}x, download ${(awsDown / down).toFixed(2)}x; upload vs read floor ${((floor / up) * 100).toFixed(1)}%\n`);
  } finally {
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
