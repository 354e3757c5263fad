/**
 * A throwaway certificate authority for the chaos etcd cluster's peer
 * traffic, made with the `openssl` CLI (argv arrays, never a shell): a CA,
 * then one key and certificate per member, signed by the CA, valid for
 * 127.0.0.1 and localhost (etcd checks the peer's IP SAN against its URL).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface MemberCert {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: string;
  member(name: string): Promise<MemberCert>;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 60_000 });
  } catch (err) {
    throw new Error(`openssl ${args[0]} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`, { cause: err });
  }
}

/** A CA in `dir` (ca.crt, ca.key); member certificates made on demand. */
export async function createPki(dir: string): Promise<TestPki> {
  const ca = join(dir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=drover chaos CA']);
  return {
    dir,
    ca,
    async member(name) {
      if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad member name ${name}`);
      const key = join(dir, `${name}.key`);
      const csr = join(dir, `${name}.csr`);
      const cert = join(dir, `${name}.crt`);
      const ext = join(dir, `${name}.ext`);
      await writeFile(ext, 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\nkeyUsage = digitalSignature, keyEncipherment\n');
      await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
      await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
      return { cert, key };
    },
  };
}
