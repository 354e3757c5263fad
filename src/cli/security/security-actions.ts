/** The work of `drover pki init|add-host` and `drover etcd setup-auth` (commands/security.ts). */
import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { keySpace } from '../../contract/keys.js';
import { DroverError } from '../../lib/errors.js';
import { addHostCert, initPki, pkiFiles, type PkiResult } from '../../security/pki.js';
import { setupAuth } from '../../security/setup-auth.js';
import { createEtcdClient } from '../../store/etcd-client.js';
import type { CliContext } from '../context.js';
import { translateEtcdError } from '../etcd-errors.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { printJson, printLine } from '../output/print.js';

export interface PkiInitFlags {
  dir: string;
  hosts?: string;
  serverNames?: string;
  json?: boolean;
}

export interface SetupAuthFlags extends GlobalFlags {
  pki: string;
  hosts?: string;
  schedulerHosts?: string;
}

const list = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

function report(ctx: CliContext, result: PkiResult, json: boolean | undefined): void {
  if (json) return printJson(ctx.io, result);
  for (const f of result.created) printLine(ctx.io, `created ${f}`);
  if (result.created.length === 0) printLine(ctx.io, `nothing to do: every certificate exists (${result.kept.length} kept)`);
}

export async function pkiInitAction(ctx: CliContext, flags: PkiInitFlags): Promise<void> {
  report(ctx, await initPki(resolve(flags.dir), { hosts: list(flags.hosts), serverNames: list(flags.serverNames) }), flags.json);
}

export async function pkiAddHostAction(ctx: CliContext, name: string, flags: { dir: string; json?: boolean }): Promise<void> {
  report(ctx, await addHostCert(resolve(flags.dir), name), flags.json);
}

/** Hosts named by the PKI dir's host-<name>.crt files. */
async function pkiHosts(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((f) => /^host-.+\.crt$/.test(f)).map((f) => f.slice('host-'.length, -'.crt'.length)).sort();
  } catch (err) {
    throw new DroverError('NOT_FOUND', `Cannot read the PKI dir ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}.`);
  }
}

export async function setupAuthAction(ctx: CliContext, flags: SetupAuthFlags): Promise<void> {
  const dir = resolve(flags.pki);
  const hosts = flags.hosts !== undefined ? list(flags.hosts) : await pkiHosts(dir);
  const schedulerHosts = list(flags.schedulerHosts);
  // The admin certificate of the PKI dir, unless flags or the environment name others.
  const admin = pkiFiles(dir, 'admin');
  const opts = resolveGlobalOptions({ etcdCa: admin.ca, etcdCert: admin.cert, etcdKey: admin.key, ...definedOnly(flags) }, ctx.env, ctx.io);
  const client = createEtcdClient(opts.endpoints, { tls: opts.etcdTls, callTimeoutMs: 5000 });
  try {
    const result = await setupAuth(client, { keys: keySpace(opts.prefix), hosts, schedulerHosts });
    if (opts.json) return printJson(ctx.io, result);
    printLine(ctx.io, `etcd users: ${result.users.join(', ')}`);
    for (const r of result.roles) printLine(ctx.io, `role ${r}`);
    printLine(ctx.io, `authentication is on at ${opts.endpoints.join(',')}; components log in with their certificates (docs/security.md)`);
  } catch (err) {
    throw translateEtcdError(err, opts.endpoints);
  } finally {
    client.close();
  }
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
