/**
 * Tap devices for bridge NICs, made with iproute2 through execFile (an argv,
 * never a shell). qemu is told `script=no,downscript=no` and opens the tap
 * drover made, so qemu itself needs no privileges beyond /dev/net/tun: a
 * confined qemu's user is made the tap's owner, which lets it attach.
 */
import { execFile } from 'node:child_process';
import { DroverError } from '../../lib/errors.js';

export interface TapSpec {
  bridge: string;
  tap: string;
}

function runIp(ipBinary: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(ipBinary, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const detail = String(stderr).trim().split('\n')[0] || err.message;
      reject(new Error(detail));
    });
  });
}

/**
 * Creates each tap and puts it on its bridge, up. `inUse` maps tap names that
 * live qemu processes have open to their pids (see `tapsInUse`); such a tap
 * is never touched. On failure, deletes the taps made so far and throws a
 * terminal error naming the bridge.
 */
export async function createTaps(
  ipBinary: string,
  taps: readonly TapSpec[],
  inUse: ReadonlyMap<string, number>,
  owner: { uid: number; gid: number } | null = null,
): Promise<void> {
  const ownerArgs = owner ? ['user', String(owner.uid), 'group', String(owner.gid)] : [];
  const made: string[] = [];
  for (const { bridge, tap } of taps) {
    const user = inUse.get(tap);
    if (user !== undefined) {
      await deleteTaps(ipBinary, made);
      throw new DroverError('START_FAILED', `The tap device ${tap} for bridge ${bridge} is already used by qemu process ${user}.`, false);
    }
    try {
      // A tap left by a VM whose exit nobody saw (the host or agent died) has
      // our name and no qemu uses it (checked above): replace it.
      await runIp(ipBinary, ['link', 'delete', 'dev', tap]).catch(() => undefined);
      await runIp(ipBinary, ['tuntap', 'add', 'dev', tap, 'mode', 'tap', ...ownerArgs]);
      made.push(tap);
      await runIp(ipBinary, ['link', 'set', 'dev', tap, 'master', bridge, 'up']);
    } catch (err) {
      await deleteTaps(ipBinary, made);
      throw new DroverError(
        'START_FAILED',
        `Could not attach a tap device to bridge ${bridge} (does the bridge exist?): ${(err as Error).message.replace(/\.$/, '')}.`,
        false,
      );
    }
  }
}

/** Deletes taps, ignoring ones already gone. */
export async function deleteTaps(ipBinary: string, taps: readonly string[]): Promise<void> {
  for (const tap of taps) {
    await runIp(ipBinary, ['link', 'delete', 'dev', tap]).catch(() => undefined);
  }
}
