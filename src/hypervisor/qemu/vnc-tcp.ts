/**
 * The rules for `vnc: "tcp"` (docs/security.md, "VNC over TCP"): a VNC
 * server on a TCP port is only started with a password or TLS, and only on
 * the loopback address unless the host's config names another
 * (vnc_listen). A VM that asks for TCP on a host configured for neither
 * ends in ERROR with a sentence that says what to set.
 *
 * The password is read from vnc_password_file at each start (so a changed
 * file takes effect on the next start) and given to qemu over QMP
 * (change-vnc-password), never on its command line, where /proc would show
 * it. Until it is set, qemu's VNC server (password=on) refuses every client.
 */
import { readFile } from 'node:fs/promises';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import type { BuildQemuArgsInput } from './build-qemu-args.js';
import { SAFE_PATH_RE } from './host-paths.js';
import type { VncTcpOptions } from './qemu-options.js';

export interface VncTcpPlan {
  /** What build-qemu-args.ts needs. */
  args: Pick<BuildQemuArgsInput, 'vncTcpHost' | 'vncPassword' | 'vncTlsDir'>;
  /** The password to set over QMP once qemu is up. */
  password?: string;
}

/** Only a host name or an IP address: nothing qemu's -vnc parser would read as an option. */
const LISTEN_RE = /^[A-Za-z0-9.:-]+$/;

/** The VNC settings of a start; `{ args: {} }` when the VM has no TCP VNC. */
export async function planVncTcp(spec: VmSpec, opts: VncTcpOptions | undefined): Promise<VncTcpPlan> {
  if (spec.vnc !== 'tcp') return { args: {} };
  const refuse = (why: string): DroverError => new DroverError('INVALID_SPEC', `VNC over TCP is refused on this host: ${why}.`, false);
  if (opts?.passwordFile === undefined && opts?.tlsDir === undefined) {
    throw refuse('it needs a password or TLS, and this agent has neither vnc_password_file nor vnc_tls_dir set (or use vnc "unix", reached through the API\'s console relay)');
  }
  const listen = opts.listen ?? '127.0.0.1';
  if (!LISTEN_RE.test(listen)) throw refuse(`vnc_listen ${JSON.stringify(listen)} is not a host name or IP address`);
  if (opts.tlsDir !== undefined && !SAFE_PATH_RE.test(opts.tlsDir)) throw refuse(`vnc_tls_dir ${JSON.stringify(opts.tlsDir)} contains a character drover does not pass to qemu`);
  const plan: VncTcpPlan = {
    args: {
      vncTcpHost: listen.includes(':') ? `[${listen}]` : listen,
      ...(opts.tlsDir !== undefined ? { vncTlsDir: opts.tlsDir } : {}),
      ...(opts.passwordFile !== undefined ? { vncPassword: true } : {}),
    },
  };
  if (opts.passwordFile !== undefined) {
    let text: string;
    try {
      text = await readFile(opts.passwordFile, 'utf8');
    } catch (err) {
      throw refuse(`the vnc_password_file ${opts.passwordFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    const password = text.split('\n')[0]?.trim() ?? '';
    if (password === '') throw refuse(`the vnc_password_file ${opts.passwordFile} is empty`);
    plan.password = password;
  }
  return plan;
}
