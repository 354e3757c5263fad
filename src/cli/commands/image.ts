/**
 * The `drover image` command group (docs/storage.md): its flags, help and
 * examples. The work is in image/image-actions.ts, imported only when a
 * command runs.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { CliContext } from '../context.js';
import { addGlobalOptions, type GlobalFlags } from '../global-options.js';
import type { ImportFlags, ListFlags, StoreSetFlags, VacuumFlags } from '../image/image-actions.js';

const actions = () => import('../image/image-actions.js');

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!(n >= 0)) throw new InvalidArgumentError('it must be a number of seconds, 0 or more');
  return n;
}

export function registerImageCommands(program: Command, ctx: CliContext): void {
  const image = program
    .command('image')
    .description('disk images (qcow2 or raw) in the fleet\'s image store, for VM disks with "image" (imgadm)')
    .addHelpText('after', examples('drover image import ./debian-12.qcow2 --name debian-12 --version 20260101', 'drover image list', 'drover image store set s3 --bucket images --endpoint http://minio:9000 --path-style'));

  addGlobalOptions(
    image
      .command('import')
      .description('import a qcow2 or raw image from a file or an http(s) URL into the image store (format from qemu-img, sha256 recorded); a URL imported before is re-checked with ETag / If-Modified-Since')
      .argument('<source>', 'a file path or an http(s) URL')
      .option('--name <name>', 'the image name (default: the file name without its extension)')
      .option('--version <version>', 'the version (default: the import time, e.g. 20261122.090000)'),
  )
    .addHelpText('after', examples('drover image import ./debian-12.qcow2 --name debian-12 --version 12.8', 'drover image import https://example.org/images/alpine.qcow2'))
    .action(async (source: string, flags: ImportFlags) => (await actions()).importAction(ctx, source, flags));

  addGlobalOptions(image.command('list').description('list image records by name, oldest version first').option('-H, --no-header', 'omit the header line'))
    .addHelpText('after', examples('drover image list', 'drover image list --json'))
    .action(async (flags: ListFlags) => (await actions()).listAction(ctx, flags));

  addGlobalOptions(image.command('get').description('print one image record as pretty JSON').argument('<image>', 'uuid, NAME:VERSION, or a name with one version'))
    .addHelpText('after', examples('drover image get debian-12:12.8'))
    .action(async (ref: string, flags: GlobalFlags) => (await actions()).getAction(ctx, ref, flags));

  addGlobalOptions(
    image
      .command('delete')
      .description('delete an image record and its bytes in the store; refused while any VM names the image')
      .argument('<image>', 'uuid, NAME:VERSION, or a name with one version'),
  )
    .addHelpText('after', examples('drover image delete debian-12:12.8'))
    .action(async (ref: string, flags: GlobalFlags) => (await actions()).deleteAction(ctx, ref, flags));

  image
    .command('vacuum')
    .description('on a host: remove cached images (STATE_DIR/images) that no VM disk on this host is an overlay of; needs no etcd')
    .requiredOption('--state-dir <dir>', 'the agent\'s state_dir')
    .option('--min-age <seconds>', 'keep images used more recently than this (a start may be making its overlay)', seconds, 300)
    .option('--dry-run', 'say what would be removed, remove nothing')
    .option('--json', 'print JSON instead of text')
    .addHelpText('after', examples('drover image vacuum --state-dir /var/lib/drover --dry-run', 'drover image vacuum --state-dir /var/lib/drover'))
    .action(async (flags: VacuumFlags) => (await actions()).vacuumAction(ctx, flags));

  const store = image.command('store').description('where the fleet keeps image bytes: P/config/image_store (credentials stay on each host)');
  addGlobalOptions(store.command('get').description('print the image store setting'))
    .action(async (flags: GlobalFlags) => (await actions()).storeGetAction(ctx, flags));
  addGlobalOptions(
    store
      .command('set')
      .description('set the image store: a directory every host mounts at the same path, or an S3 bucket')
      .argument('<type>', 'dir or s3')
      .argument('[path]', 'for dir: the absolute directory')
      .option('--bucket <bucket>', 'for s3: the bucket')
      .option('--endpoint <url>', 'for s3: an S3-compatible endpoint (default: AWS)')
      .option('--region <region>', 'for s3: the region (default us-east-1)')
      .option('--path-style', 'for s3: bucket in the path, as most S3-compatible servers want')
      .option('--key-prefix <prefix>', 'for s3: prepended to every key, ending in "/" (e.g. drover/)'),
  )
    .addHelpText('after', examples('drover image store set dir /srv/drover-images', 'drover image store set s3 --bucket images --endpoint http://10.0.0.5:9000 --path-style'))
    .action(async (type: string, path: string | undefined, flags: StoreSetFlags) => (await actions()).storeSetAction(ctx, type, path, flags));
}
