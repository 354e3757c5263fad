/**
 * s3rver in its own Node process, so that a benchmark's clients (drover's
 * CLI, awscli) do not share an event loop with the server. Run as a script
 * (`node dist/bench/lib/s3rver-process.js DIR BUCKET`) it serves DIR on a
 * free loopback port and prints `{"port":N}` on stdout once listening;
 * imported, startS3rverProc() spawns that script (argv array) and waits for
 * the line. The credentials are s3rver's fixed ones (S3RVER_CREDENTIALS).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import S3rver from 's3rver';

export interface S3rverProc {
  endpoint: string;
  pid: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Spawns this file as a script serving `dir` with `bucket`; resolves when it listens. */
export async function startS3rverProc(dir: string, bucket: string, timeoutMs = 20_000): Promise<S3rverProc> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), dir, bucket], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not listen within ${timeoutMs} ms`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      const p = (JSON.parse(line) as { port?: unknown }).port;
      if (typeof p === 'number') resolve(p);
      else reject(new Error(`s3rver printed ${line}`));
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error('s3rver exited during start-up'));
    });
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { endpoint: `http://127.0.0.1:${port}`, pid: child.pid as number, child, stop };
}

async function serve(dir: string, bucket: string): Promise<void> {
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  const close = (): void => void server.close().finally(() => process.exit(0));
  process.once('SIGTERM', close);
  process.once('SIGINT', close);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, bucket] = process.argv.slice(2);
  if (dir === undefined || bucket === undefined) {
    process.stderr.write('usage: s3rver-process.js DIR BUCKET\n');
    process.exit(2);
  }
  serve(dir, bucket).catch((err: unknown) => {
    process.stderr.write(`s3rver: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
