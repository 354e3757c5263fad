/**
 * What the `drover image` commands do; loaded on demand by
 * commands/image.ts. Records are in etcd (`P/image/<uuid>`), bytes in the
 * image store that `P/config/image_store` names (docs/storage.md).
 */
import { imageObjectKey, parseImageRef, refMayMean, type ImageRecord } from '../../contract/image-record.js';
import { DroverError } from '../../lib/errors.js';
import { describeImageStoreConfig, IMAGE_STORE_CONFIG, openImageStore, parseImageStoreConfig, readImageStoreConfig, requireImageStoreConfig, type ImageStoreConfig } from '../../storage/image-store-config.js';
import { vacuumImageCache } from '../../storage/image-vacuum.js';
import { QemuImg } from '../../storage/qemu-img.js';
import { s3CredentialsFrom } from '../../storage/s3/location.js';
import { ImageRepository, type StoredImage } from '../../store/image-repository.js';
import { rawObject } from '../../store/vm-repository.js';
import type { CliContext, CliEnv } from '../context.js';
import { resolveGlobalOptions, type GlobalFlags } from '../global-options.js';
import { formatCell } from '../output/fields.js';
import { printJson, printLine } from '../output/print.js';
import { formatBytes } from '../output/progress.js';
import { formatTable } from '../output/table.js';
import { withStore, type StoreSession } from '../store-session.js';
import { resolveTransferSettings } from '../backup/s3-options.js';
import { importImage } from './import-image.js';

export interface ImportFlags extends GlobalFlags {
  name?: string;
  version?: string;
}

export interface ListFlags extends GlobalFlags {
  header: boolean;
}

export interface VacuumFlags {
  stateDir: string;
  minAge: number;
  dryRun?: boolean;
  json?: boolean;
}

export interface StoreSetFlags extends GlobalFlags {
  bucket?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  keyPrefix?: string;
}

/** S3 credentials for this command: DROVER_S3_* if set, else the AWS SDK's default chain. */
function credentials(env: CliEnv) {
  return s3CredentialsFrom(env.DROVER_S3_ACCESS_KEY_ID, env.DROVER_S3_SECRET_ACCESS_KEY);
}

export async function importAction(ctx: CliContext, source: string, flags: ImportFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const result = await withStore(opts, async (session) => {
    const config = await requireImageStoreConfig(session.kv, session.keys);
    return importImage(
      {
        images: new ImageRepository(session.kv, session.keys),
        store: await openImageStore(config, credentials(ctx.env), resolveTransferSettings(ctx.env)),
        qemuImg: new QemuImg(),
        stderr: ctx.io.stderr,
      },
      { source, ...(flags.name !== undefined ? { name: flags.name } : {}), ...(flags.version !== undefined ? { version: flags.version } : {}) },
    );
  });
  const r = result.record;
  if (opts.json) return printJson(ctx.io, { ...r, outcome: result.outcome });
  if (result.outcome === 'unchanged') return printLine(ctx.io, `Image ${r.name}:${r.version} (${r.uuid}) is up to date: the server says ${source} has not changed.`);
  printLine(ctx.io, `Imported ${r.name}:${r.version} as ${r.uuid} (${r.format}, ${formatBytes(r.size)}, sha256 ${r.sha256}).`);
}

const COLUMNS = ['uuid', 'name', 'version', 'format', 'size', 'virtual_size', 'state', 'created_at'];

export async function listAction(ctx: CliContext, flags: ListFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const images = await withStore(opts, (s) => new ImageRepository(s.kv, s.keys).list());
  const sorted = [...images].sort((a, b) => {
    const ka = a.parsed.ok ? `${a.parsed.value.name}\0${a.parsed.value.created_at}` : `\uffff${a.uuid}`;
    const kb = b.parsed.ok ? `${b.parsed.value.name}\0${b.parsed.value.created_at}` : `\uffff${b.uuid}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  if (opts.json) return printJson(ctx.io, sorted.map((i) => rawObject(i.raw) ?? { uuid: i.uuid, raw: i.raw }));
  const rows = sorted.map((i) => {
    if (!i.parsed.ok) return [i.uuid, null, null, null, null, null, `invalid: ${i.parsed.error}`, null].map(formatCell);
    const r = i.parsed.value;
    return [r.uuid, r.name, r.version, r.format, formatBytes(r.size), formatBytes(r.virtual_size), r.state, r.created_at].map(formatCell);
  });
  ctx.io.stdout.write(formatTable(COLUMNS, rows, { header: flags.header }));
}

/**
 * The one record `ref` names among all records (any state): a uuid,
 * `name:version`, or a name that has exactly one version.
 */
export function findImage(images: readonly StoredImage[], ref: string): StoredImage {
  const r = parseImageRef(ref);
  const valid = images.filter((i): i is StoredImage & { parsed: { ok: true; value: ImageRecord } } => i.parsed.ok);
  let found: StoredImage[];
  if (r.kind === 'uuid') found = images.filter((i) => i.uuid === r.uuid);
  else found = valid.filter((i) => i.parsed.value.name === r.name && (r.version === undefined || i.parsed.value.version === r.version));
  if (found.length === 0) throw new DroverError('NOT_FOUND', `No image is named ${JSON.stringify(ref)} (drover image list).`);
  if (found.length > 1) {
    const versions = found
      .flatMap((i) => (i.parsed.ok ? [i.parsed.value] : []))
      .sort((a, b) => (a.created_at < b.created_at ? -1 : 1))
      .map((v) => v.version)
      .join(', ');
    throw new DroverError('AMBIGUOUS', `Image name ${ref} has versions ${versions}; say which with NAME:VERSION or the uuid.`);
  }
  return found[0]!;
}

export async function getAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const found = await withStore(opts, async (s) => findImage(await new ImageRepository(s.kv, s.keys).list(), ref));
  const obj = rawObject(found.raw);
  if (obj) printJson(ctx.io, obj);
  else printLine(ctx.io, found.raw);
}

/** The VMs whose disks may be overlays of `image` (conservatively: every VM naming its name). */
async function vmsUsing(session: StoreSession, image: Pick<ImageRecord, 'uuid' | 'name' | 'version'>): Promise<string[]> {
  const { vms } = await session.vms.list();
  const users: string[] = [];
  for (const vm of vms) {
    const obj = vm.parsed.ok ? vm.parsed.value : rawObject(vm.raw);
    const disks = (obj?.spec as { disks?: unknown } | undefined)?.disks;
    if (!Array.isArray(disks)) continue;
    const uses = disks.some((d) => typeof (d as { image?: unknown })?.image === 'string' && refMayMean((d as { image: string }).image, image));
    if (uses) users.push(typeof obj?.name === 'string' ? obj.name : vm.uuid);
  }
  return users.sort();
}

/**
 * Claims the image for deletion (compare-and-swap to `deleting`), then
 * looks for VMs using it. The order closes the race with a VM made
 * meanwhile: an agent never uses a `deleting` image (its start waits), so a
 * VM that could use this one resolved it before the claim, and was written
 * before it, so the search that follows finds it. When a VM uses it, the
 * record goes back to what it was (compare-and-swap on the claim) and the
 * delete is refused. Returns the claimed record, to delete.
 */
async function claimForDeletion(session: StoreSession, found: StoredImage): Promise<StoredImage> {
  if (!found.parsed.ok) return found; // a malformed record no VM can resolve
  const image = found.parsed.value;
  const claimed = JSON.stringify({ ...(rawObject(found.raw) ?? {}), state: 'deleting' });
  const revision = await session.kv.putIfRevision(found.key, claimed, found.modRevision);
  if (revision === null) throw new DroverError('CONFLICT', `Image ${found.uuid} changed while it was being deleted; try again.`, true);
  const users = await vmsUsing(session, image);
  if (users.length > 0) {
    // Back to its state unless it changed again meanwhile (then that change stands).
    await session.kv.putIf(found.key, found.raw, revision);
    const shown = users.slice(0, 5).join(', ') + (users.length > 5 ? ` and ${users.length - 5} more` : '');
    throw new DroverError('CONFLICT', `Image ${image.name}:${image.version} is used by VM ${shown}; delete those VMs first.`);
  }
  return { ...found, raw: claimed, modRevision: revision };
}

export async function deleteAction(ctx: CliContext, ref: string, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const deleted = await withStore(opts, async (session) => {
    const repo = new ImageRepository(session.kv, session.keys);
    const found = await claimForDeletion(session, findImage(await repo.list(), ref));
    // The record first: once it is gone no new VM can resolve the image; an
    // object left behind by a failure below is only garbage.
    if (!(await repo.deleteIf(found))) throw new DroverError('CONFLICT', `Image ${found.uuid} changed while it was being deleted; try again.`, true);
    const config = await readImageStoreConfig(session.kv, session.keys);
    if (config) await (await openImageStore(config, credentials(ctx.env))).delete(imageObjectKey(found.uuid));
    return found;
  });
  const what = deleted.parsed.ok ? `${deleted.parsed.value.name}:${deleted.parsed.value.version} (${deleted.uuid})` : deleted.uuid;
  if (opts.json) return printJson(ctx.io, { uuid: deleted.uuid, deleted: true });
  printLine(ctx.io, `Image ${what} deleted.`);
}

export async function vacuumAction(ctx: CliContext, flags: VacuumFlags): Promise<void> {
  if (!flags.stateDir.startsWith('/')) throw new DroverError('USAGE', 'Option --state-dir must be an absolute path (the agent\'s state_dir).');
  const result = await vacuumImageCache({ stateDir: flags.stateDir, qemuImg: new QemuImg(), minAgeMs: flags.minAge * 1000, dryRun: flags.dryRun === true });
  if (flags.json === true) return printJson(ctx.io, result);
  const verb = flags.dryRun === true ? 'Would remove' : 'Removed';
  const bytes = result.removed.reduce((n, r) => n + r.size, 0);
  for (const r of result.removed) printLine(ctx.io, `${verb.toLowerCase()} ${r.sha256} (${formatBytes(r.size)})`);
  printLine(ctx.io, `${verb} ${result.removed.length} cached image${result.removed.length === 1 ? '' : 's'} (${formatBytes(bytes)}); ${result.kept.length} kept.`);
}

export async function storeGetAction(ctx: CliContext, flags: GlobalFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  const config = await withStore(opts, (s) => readImageStoreConfig(s.kv, s.keys));
  if (opts.json) return printJson(ctx.io, config);
  printLine(ctx.io, config ? describeImageStoreConfig(config) : 'No image store is set (drover image store set).');
}

export async function storeSetAction(ctx: CliContext, type: string, path: string | undefined, flags: StoreSetFlags): Promise<void> {
  const opts = resolveGlobalOptions(flags, ctx.env, ctx.io);
  let candidate: Record<string, unknown>;
  if (type === 'dir') {
    if (path === undefined) throw new DroverError('USAGE', 'drover image store set dir needs the directory: drover image store set dir /srv/drover-images.');
    candidate = { type: 'dir', path };
  } else if (type === 's3') {
    if (path !== undefined) throw new DroverError('USAGE', 'drover image store set s3 takes no path; give --bucket (and --endpoint, --region, --path-style, --key-prefix).');
    if (flags.bucket === undefined) throw new DroverError('USAGE', 'drover image store set s3 needs --bucket.');
    candidate = {
      type: 's3',
      bucket: flags.bucket,
      ...(flags.endpoint !== undefined ? { endpoint: flags.endpoint } : {}),
      ...(flags.region !== undefined ? { region: flags.region } : {}),
      path_style: flags.pathStyle === true,
      ...(flags.keyPrefix !== undefined ? { prefix: flags.keyPrefix } : {}),
    };
  } else {
    throw new DroverError('USAGE', `The image store type must be dir or s3, not ${JSON.stringify(type)}.`);
  }
  const config: ImageStoreConfig = parseImageStoreConfig(candidate);
  await withStore(opts, (s) => s.kv.put(s.keys.config(IMAGE_STORE_CONFIG), JSON.stringify(config)));
  if (opts.json) return printJson(ctx.io, config);
  printLine(ctx.io, `Image store set: ${describeImageStoreConfig(config)}.`);
}
