import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { agentConfigSchema, RENAMED_KEYS } from '../../src/config/agent-config.js';
import { DEFAULT_BACKUP_TRANSFER, backupTransferSchema } from '../../src/storage/backup-settings.js';
import { resolveS3Settings, resolveTransferSettings } from '../../src/cli/backup/s3-options.js';

const MiB = 1024 * 1024;

describe('backup transfer settings', () => {
  it("defaults follow chunter: 5 MiB / 5 / 10 up, 5 MiB / 5 / 10 down, preload 10, in the agent's config too", () => {
    const expected = {
      s3_upload_chunk_size: 5 * MiB, parallel_uploads: 5, max_parallel_uploads: 10,
      s3_download_chunk_size: 5 * MiB, parallel_downloads: 5, max_parallel_downloads: 10, preload: 10,
    };
    assert.deepEqual({ ...DEFAULT_BACKUP_TRANSFER }, expected);
    const agent = agentConfigSchema.parse({ name: 'hv1', state_dir: '/var/lib/drover' });
    for (const [k, v] of Object.entries(expected)) assert.equal(agent[k as keyof typeof agent], v, k);
    assert.equal(RENAMED_KEYS.max_paralell_uploads, 'max_parallel_uploads');
  });

  it('refuses parts smaller than S3 accepts', () => {
    assert.equal(backupTransferSchema.safeParse({ s3_upload_chunk_size: MiB }).success, false);
  });

  it('the CLI reads DROVER_<KEY> and DROVER_S3_*; a bad value is a usage error', () => {
    assert.equal(resolveTransferSettings({ DROVER_PARALLEL_UPLOADS: '3' }).parallel_uploads, 3);
    assert.throws(() => resolveTransferSettings({ DROVER_PRELOAD: 'x' }), /transfer settings are invalid/);
    const s = resolveS3Settings({ s3Endpoint: 'http://127.0.0.1:9000' }, { DROVER_S3_BUCKET: 'backups', DROVER_S3_PATH_STYLE: '1' });
    assert.deepEqual([s.bucket, s.endpoint, s.path_style, s.region, s.credentials], ['backups', 'http://127.0.0.1:9000', true, 'us-east-1', undefined]);
    assert.throws(() => resolveS3Settings({}, {}), /--s3-bucket/);
  });
});
