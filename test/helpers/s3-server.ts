/**
 * A real S3-compatible server for a test suite: s3rver on a free loopback
 * port with its data in a temp dir, a bucket made through its API, drover's
 * own S3 client for it, and the independent client (Debian's awscli, run
 * with an async execFile so s3rver in this same process keeps serving) to
 * cross-check what drover wrote.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import type { S3Client } from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../../src/storage/s3/client.js';

/** s3rver's fixed credentials (it checks signatures against them). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface AwsResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** What createS3Client / an image store setting needs (credentials included). */
  settings: S3Settings;
  client: S3Client;
  /** `aws --endpoint-url ENDPOINT ARGS...` with s3rver's credentials. */
  aws(args: readonly string[]): Promise<AwsResult>;
  /** Environment for a drover process using this server (credentials). */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startTestS3(bucket = 'drover-test'): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), 'drover-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(dir, 'data'), configureBuckets: [{ name: bucket }] });
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const settings: S3Settings = { endpoint, region: 'us-east-1', bucket, path_style: true, credentials: S3RVER_CREDENTIALS };
  const client = createS3Client(settings);
  const awsConfig = join(dir, 'aws-config');
  await writeFile(awsConfig, '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n');
  const awsEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    AWS_CONFIG_FILE: awsConfig,
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
  };
  return {
    endpoint,
    bucket,
    settings,
    client,
    env: { DROVER_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, DROVER_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey },
    aws: (args) =>
      new Promise((resolve) => {
        execFile('aws', ['--endpoint-url', endpoint, ...args], { env: awsEnv, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        });
      }),
    close: async () => {
      client.destroy();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
