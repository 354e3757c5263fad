/** The logger censors secret fields wherever a caller puts them (src/lib/logger.ts). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/lib/logger.js';

describe('logger', () => {
  it('writes [secret] for passwords, tokens, S3 secret keys and SMTP URLs, at the top and one level down', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'drover-log-'));
    try {
      const file = join(dir, 'log');
      const log = createLogger({ destination: file });
      log.info({ password: 'hunter2', config: { s3_secret_access_key: 'AKIASECRET', smtp_url: 'smtp://u:pw@mail', name: 'hv1' }, req: { authorization: 'Bearer drt_x' } }, 'hello');
      log.flush();
      const line = await readFile(file, 'utf8');
      for (const secret of ['hunter2', 'AKIASECRET', 'u:pw@mail', 'drt_x']) assert.ok(!line.includes(secret), `${secret} is not in ${line}`);
      assert.match(line, /"name":"hv1"/, 'other fields are kept');
      assert.equal(line.split('[secret]').length - 1, 4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
