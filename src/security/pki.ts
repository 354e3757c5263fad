/**
 * drover's small PKI (CONTRACT.md section 8, docs/security.md): one CA and a
 * certificate per etcd user. `DIR/ca.crt`, then `DIR/<who>.crt` and
 * `DIR/<who>.key` for `etcd` (the server; also its peer certificate),
 * `admin`, `scheduler`, `api` and `host-<name>` per host. A client
 * certificate's CN is its etcd user name (etcd's --client-cert-auth).
 *
 * The certificates are made by Debian's `openssl` (argv arrays only; names
 * are checked before they reach it). Keys are EC P-256, 0600, in a 0700
 * directory; the CA key stays in DIR and signs later additions.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, chmod, mkdir, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HOST_NAME_RE } from '../contract/vm-record.js';
import { DroverError } from '../lib/errors.js';

const run = promisify(execFile);

/** The component users every cluster has, besides one `host-<name>` per host. */
export const COMPONENT_USERS = ['admin', 'scheduler', 'api'] as const;
export type ComponentUser = (typeof COMPONENT_USERS)[number];

/** The etcd user (and certificate CN) of a host's agent. */
export function hostUser(name: string): string {
  return `host-${name}`;
}

const CA_DAYS = 3650;
const LEAF_DAYS = 825;
/** Names and addresses the etcd server certificate always carries. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];
const SERVER_NAME_RE = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

export interface PkiFiles {
  ca: string;
  cert: string;
  key: string;
}

/** The files of one user's certificate in a PKI dir. */
export function pkiFiles(dir: string, who: string): PkiFiles {
  return { ca: join(dir, 'ca.crt'), cert: join(dir, `${who}.crt`), key: join(dir, `${who}.key`) };
}

export interface PkiInitOptions {
  /** Hosts to make `host-<name>` certificates for now (pki add-host adds more later). */
  hosts?: readonly string[];
  /** DNS names and IP addresses of the etcd server(s), besides localhost and loopback. */
  serverNames?: readonly string[];
}

export interface PkiResult {
  /** Files written by this call; existing ones are kept. */
  created: string[];
  kept: string[];
}

/**
 * Makes the CA (unless DIR has one) and every missing certificate. Safe to
 * run again: nothing existing is replaced, so a running cluster's
 * certificates stay valid.
 */
export async function initPki(dir: string, opts: PkiInitOptions = {}): Promise<PkiResult> {
  const hosts = opts.hosts ?? [];
  for (const h of hosts) checkHostName(h);
  const serverNames = [...LOOPBACK_NAMES, ...(opts.serverNames ?? []).map(checkServerName)];
  await openssl(['version']).catch((err: unknown) => {
    throw missingOpenssl(err);
  });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const result: PkiResult = { created: [], kept: [] };
  if (await exists(join(dir, 'ca.crt'))) {
    if (!(await exists(join(dir, 'ca.key')))) throw new DroverError('USAGE', `${dir} has a ca.crt but no ca.key, so no certificate can be added there.`);
    result.kept.push(join(dir, 'ca.crt'));
  } else {
    await makeCa(dir);
    result.created.push(join(dir, 'ca.crt'), join(dir, 'ca.key'));
  }
  await leaf(dir, 'etcd', { serverNames, server: true }, result);
  for (const who of COMPONENT_USERS) await leaf(dir, who, {}, result);
  for (const h of hosts) await leaf(dir, hostUser(h), {}, result);
  return result;
}

/** `drover pki add-host NAME`: one more `host-<name>` certificate, signed by DIR's CA. */
export async function addHostCert(dir: string, name: string): Promise<PkiResult> {
  checkHostName(name);
  if (!(await exists(join(dir, 'ca.key')))) throw new DroverError('NOT_FOUND', `${dir} has no CA (ca.key); run drover pki init --dir ${dir} first.`);
  const result: PkiResult = { created: [], kept: [] };
  await leaf(dir, hostUser(name), {}, result);
  return result;
}

async function makeCa(dir: string): Promise<void> {
  const key = join(dir, 'ca.key');
  await openssl([
    'req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', key, '-out', join(dir, 'ca.crt'), '-days', String(CA_DAYS), '-subj', '/CN=drover CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(key, 0o600);
  await chmod(join(dir, 'ca.crt'), 0o644);
}

async function leaf(dir: string, who: string, opts: { serverNames?: readonly string[]; server?: boolean }, result: PkiResult): Promise<void> {
  const { cert, key } = pkiFiles(dir, who);
  if (await exists(cert)) {
    result.kept.push(cert);
    return;
  }
  const csr = join(dir, `${who}.csr`);
  const san = (opts.serverNames ?? []).map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  try {
    await openssl([
      'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${who}`,
      '-addext', `extendedKeyUsage=${opts.server ? 'serverAuth,clientAuth' : 'clientAuth'}`,
      '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
      ...(san ? ['-addext', `subjectAltName=${san}`] : []),
    ]);
    await chmod(key, 0o600);
    await openssl([
      'x509', '-req', '-in', csr, '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-set_serial', `0x${randomBytes(16).toString('hex')}`,
      '-days', String(LEAF_DAYS), '-copy_extensions', 'copyall', '-out', cert,
    ]);
    await chmod(cert, 0o644);
  } catch (err) {
    await rm(key, { force: true });
    await rm(cert, { force: true });
    throw err;
  } finally {
    await rm(csr, { force: true });
  }
  result.created.push(cert, key);
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw missingOpenssl(err);
    const why = (e.stderr ?? e.message).trim().split('\n').pop() ?? 'failed';
    throw new DroverError('IO_ERROR', `openssl ${args[0]} failed: ${why}.`);
  }
}

function missingOpenssl(err: unknown): DroverError {
  return (err as NodeJS.ErrnoException).code === 'ENOENT'
    ? new DroverError('SPAWN_FAILED', "The openssl binary was not found; install Debian's openssl package.")
    : new DroverError('IO_ERROR', `openssl does not work: ${(err as Error).message}.`);
}

function checkHostName(name: string): void {
  if (!HOST_NAME_RE.test(name)) throw new DroverError('USAGE', `The host name ${JSON.stringify(name)} is not valid: use letters, digits, ".", "_" and "-".`);
}

function checkServerName(name: string): string {
  if (isIP(name) || SERVER_NAME_RE.test(name)) return name;
  throw new DroverError('USAGE', `The etcd server name ${JSON.stringify(name)} is neither a DNS name nor an IP address.`);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
