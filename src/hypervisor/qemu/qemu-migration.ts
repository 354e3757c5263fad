/**
 * Live migration over QMP for QemuHypervisor (docs/migration.md): the
 * source's `migrate` and its progress, cancelling, and the target's
 * `migrate-incoming` on a qemu started with `-incoming defer`.
 */
import { DroverError, oneSentence } from '../../lib/errors.js';
import type { MigrateOptions, OutgoingMigration } from '../hypervisor.js';
import type { QmpClient } from './qmp-client.js';
import type { QemuVm } from './qemu-vm.js';

/** Drives an outgoing migration of a running VM to `uri` until it completes (or fails, or times out and is cancelled). */
export async function migrateVm(vm: QemuVm | undefined, uuid: string, uri: string, opts: MigrateOptions): Promise<void> {
  if (!vm || vm.gone) throw new DroverError('MIGRATION_FAILED', `VM ${uuid} is not running on this host.`, false);
  const client = vm.client;
  if (!client) throw new DroverError('MIGRATION_FAILED', `VM ${uuid} has no QMP connection to drive the migration with.`, true);
  const deadline = Date.now() + opts.timeoutMs;
  const failed = (why: string, cause?: unknown) => new DroverError('MIGRATION_FAILED', oneSentence(why), false, { cause });
  try {
    await client.execute('migrate', { uri });
  } catch (err) {
    throw failed(`qemu refused to start the migration: ${(err as Error).message}`, err);
  }
  for (;;) {
    let info;
    try {
      info = await client.execute('query-migrate');
    } catch (err) {
      throw failed(vm.gone ? 'qemu exited during the migration' : `the migration could not be followed: ${(err as Error).message}`, err);
    }
    if (info.ram) opts.onProgress?.({ transferred: info.ram.transferred, remaining: info.ram.remaining, total: info.ram.total });
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw failed(`the migration ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`);
    }
    if (Date.now() >= deadline) {
      await cancelMigration(client);
      throw failed(`the migration did not complete within ${Math.round(opts.timeoutMs / 1000)} s and was cancelled`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Where the VM's outgoing migration stands. */
export async function outgoingMigration(client: QmpClient | null | undefined): Promise<OutgoingMigration> {
  if (!client) return 'none';
  const [info, status] = await Promise.all([client.execute('query-migrate'), client.execute('query-status')]);
  if (info.status === 'completed' || status.status === 'postmigrate') return 'completed';
  if (info.status === undefined || info.status === 'none') return 'none';
  if (info.status === 'failed' || info.status === 'cancelled') return 'failed';
  return 'active';
}

/** Cancels an outgoing migration and waits (briefly) until qemu has left the active states. */
export async function cancelMigration(client: QmpClient | null | undefined): Promise<void> {
  if (!client) return;
  await client.execute('migrate_cancel').catch(() => undefined);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const info = await client.execute('query-migrate').catch(() => null);
    if (!info || !['setup', 'active', 'cancelling', 'device', 'pre-switchover'].includes(info.status ?? 'none')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Makes a qemu started with `-incoming defer` listen on `host` (any free port); returns the URI to migrate to. */
export async function listenForMigration(client: QmpClient, host: string): Promise<string> {
  const h = host.includes(':') ? `[${host}]` : host;
  try {
    await client.execute('migrate-incoming', { uri: `tcp:${h}:0` });
  } catch (err) {
    // A bad migration_address (not an address of this host): no retry can fix it.
    throw new DroverError('START_FAILED', oneSentence(`qemu could not listen for the migration on ${host}: ${(err as Error).message}`), false, { cause: err });
  }
  const info = await client.execute('query-migrate');
  const port = info['socket-address']?.find((a) => a.port !== undefined)?.port;
  if (port === undefined) throw new DroverError('START_FAILED', 'qemu did not say which port it listens on for the migration.', false);
  return `tcp:${h}:${port}`;
}
