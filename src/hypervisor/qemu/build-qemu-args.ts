/**
 * The qemu command line for one VM, as a pure function of its spec: no I/O,
 * so it is tested with tables (test/unit/build-qemu-args.test.ts).
 *
 * Nothing here ever meets a shell: the result is an argv array for spawn().
 * It still meets qemu's own option parser, where `,` separates key=value
 * pairs; a value that contains a comma must double it (`a,,b` means "a,b").
 * Every user-influenced value that sits inside a key=value list goes through
 * `escapeOptValue`. `-kernel`, `-initrd` and `-append` take their argument
 * verbatim and are passed as they are.
 *
 * Sockets and logs are chardevs (`-chardev ... -mon` / `-serial chardev:`)
 * rather than the legacy `-qmp unix:PATH` / `-serial file:PATH` forms, because
 * the legacy `file:` form takes the rest of the string literally while the
 * chardev form escapes like every other option: one rule for every path.
 *
 * Confinement (docs/security.md): every qemu gets `-sandbox` (seccomp: no
 * obsolete syscalls, no privilege changes, no spawning, no resource
 * control). With `files` (host-files.ts, always given by QemuHypervisor)
 * the kernel, initrd and disks are open descriptors, not host paths: disks
 * through `-add-fd` fdsets with their backing chains named explicitly, so
 * qemu never opens a path a record or an image header names.
 */
import { createHash } from 'node:crypto';
import type { VmSpec } from '../../contract/vm-record.js';
import { DroverError } from '../../lib/errors.js';
import type { Accel } from '../hypervisor.js';

export type DiskFormat = 'raw' | 'qcow2';

export interface QemuRunPaths {
  qmpSocket: string;
  vncSocket: string;
  serialSocket: string;
  serialLog: string;
}

export interface BuildQemuArgsInput {
  uuid: string;
  name: string;
  spec: VmSpec;
  paths: QemuRunPaths;
  accel: Accel;
  /**
   * Formats the caller detected (from magic bytes) for `path` disks whose spec
   * gives none, indexed like `spec.disks`. A disk's own `format` wins.
   */
  detectedFormats?: ReadonlyArray<DiskFormat | undefined>;
  /** Where `vnc: "tcp"` listens; 127.0.0.1 by default. An IPv4 address or host name. */
  vncTcpHost?: string;
  /** q35 by default. */
  machine?: 'q35' | 'pc';
  /** For `rbd` disks. */
  ceph?: CephOptions;
  /** `vnc: "tcp"` asks for a password (set over QMP after the start: change-vnc-password). */
  vncPassword?: boolean;
  /** `vnc: "tcp"` uses TLS with the x509 files in this directory (ca-cert.pem, server-cert.pem, server-key.pem). */
  vncTlsDir?: string;
  /** The host files as descriptors (host-files.ts); paths from the spec when absent. */
  files?: PassedFiles;
}

/** The seccomp filter every qemu runs under. */
export const SANDBOX_ARG = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/** One file qemu gets as descriptors; `fds` are qemu's fd numbers (3 and up, in spawn order). */
export interface PassedFile {
  fds: number[];
  format: DiskFormat;
}

/** A disk qemu opens through fdsets: its own file, then its backing files top-down. */
export interface PassedDisk {
  chain: PassedFile[];
}

/** What host-files.ts opened for a spec, as qemu names it. */
export interface PassedFiles {
  /** `/proc/self/fd/N` (qemu 7.2's loader opens a file name, not an fdset). */
  kernel?: string;
  initrd?: string;
  /** Indexed like spec.disks; undefined for rbd disks. */
  disks: ReadonlyArray<PassedDisk | undefined>;
}

/** Doubles commas, as qemu's key=value option parser requires. */
export function escapeOptValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** Undoes `escapeOptValue` for one value taken from a parsed option list. */
export function unescapeOptValue(value: string): string {
  return value.replaceAll(',,', ',');
}

/**
 * The tap device of a VM's `index`-th bridge NIC: "dv" + 12 hex digits of a
 * hash of the uuid + the NIC index, 15 characters (Linux's IFNAMSIZ - 1).
 * Hashing (rather than taking the uuid's first digits) keeps two uuids that
 * share a prefix from sharing a tap.
 */
export function tapName(uuid: string, index: number): string {
  const hex = createHash('sha256').update(uuid).digest('hex').slice(0, 12);
  return `dv${hex}${index.toString(36)}`;
}

/** A stable, locally administered MAC for a NIC without one: 52:54:00 (qemu's prefix) + a hash of uuid and index. */
export function defaultMac(uuid: string, index: number): string {
  const h = createHash('sha256').update(`${uuid}/${index}`).digest();
  const tail = [h[0], h[1], h[2]].map((b) => (b ?? 0).toString(16).padStart(2, '0'));
  return ['52', '54', '00', ...tail].join(':');
}

/**
 * The terminal error for a disk that still names an image: the agent turns
 * image disks into overlay files (src/storage/prepare-disks.ts) before it
 * asks the hypervisor to start, so the hypervisor only ever sees files.
 */
export function imageDiskError(index: number, image: string): DroverError {
  return new DroverError(
    'INVALID_SPEC',
    `Disk ${index + 1} uses image ${image}, which must be prepared as an overlay file before the hypervisor starts the VM.`,
    false,
  );
}

/** How qemu's rbd driver reaches the Ceph cluster (agent config ceph_conf, ceph_user); librados defaults when absent. */
export interface CephOptions {
  /** A ceph.conf path; /etc/ceph/ceph.conf by default. */
  conf?: string;
  /** The cephx user without "client." (librados: "admin"). */
  user?: string;
}

/** The bridge NICs of a spec with their tap device names, in NIC order. */
export function bridgeTaps(uuid: string, spec: VmSpec): Array<{ bridge: string; tap: string }> {
  const out: Array<{ bridge: string; tap: string }> = [];
  (spec.nics ?? []).forEach((nic, i) => {
    if (nic.network !== 'user') out.push({ bridge: nic.network, tap: tapName(uuid, i) });
  });
  return out;
}

export function buildQemuArgs(input: BuildQemuArgsInput): string[] {
  const { uuid, name, spec, paths, accel } = input;
  const esc = escapeOptValue;
  const argv: string[] = [
    '-name', `guest=${esc(name)},debug-threads=on`,
    '-uuid', uuid,
    '-machine', `${input.machine ?? 'q35'},accel=${accel}`,
  ];
  if (accel === 'kvm') argv.push('-cpu', 'host');
  argv.push(
    '-smp', String(spec.vcpus),
    '-m', String(spec.memory),
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-sandbox', SANDBOX_ARG,
    '-chardev', `socket,id=qmp,path=${esc(paths.qmpSocket)},server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    // The serial console: a socket for `drover vm console` and the API's relay, and everything the guest prints in the log too.
    '-chardev', `socket,id=serial0,path=${esc(paths.serialSocket)},server=on,wait=off,logfile=${esc(paths.serialLog)}`,
    '-serial', 'chardev:serial0',
  );
  argv.push(...vncArgs(input));
  if (spec.boot) {
    argv.push('-kernel', input.files?.kernel ?? spec.boot.kernel);
    if (spec.boot.initrd !== undefined) argv.push('-initrd', input.files?.initrd ?? spec.boot.initrd);
    if (spec.boot.cmdline !== undefined) argv.push('-append', spec.boot.cmdline);
  }
  argv.push(...diskArgs(input));
  argv.push(...nicArgs(uuid, spec));
  return argv;
}

/** The VNC server and a screen for it to show (a standard VGA card; -nodefaults leaves none). */
function vncArgs(input: BuildQemuArgsInput): string[] {
  switch (input.spec.vnc) {
    case 'none':
      return [];
    case 'tcp': {
      // Display 0..99 on the loopback address (unless the host's vnc_listen
      // says otherwise): qemu takes the first free port from 5900 up;
      // query-vnc tells which.
      const opts = [`${escapeOptValue(input.vncTcpHost ?? '127.0.0.1')}:0`, 'to=99'];
      const tls: string[] = [];
      if (input.vncTlsDir !== undefined) {
        tls.push('-object', `tls-creds-x509,id=vnctls,dir=${escapeOptValue(input.vncTlsDir)},endpoint=server,verify-peer=off`);
        opts.push('tls-creds=vnctls');
      }
      if (input.vncPassword) opts.push('password=on');
      return [...tls, '-vnc', opts.join(','), '-device', 'VGA'];
    }
    case 'unix':
    default:
      return ['-vnc', `unix:${escapeOptValue(input.paths.vncSocket)}`, '-device', 'VGA'];
  }
}

function diskArgs(input: BuildQemuArgsInput): string[] {
  const out: string[] = [];
  (input.spec.disks ?? []).forEach((disk, i) => {
    if (disk.rbd !== undefined) {
      out.push(...rbdDiskArgs(i, disk.rbd, disk.format ?? 'raw', bootIndex(input, i), input.ceph));
      return;
    }
    if (disk.path === undefined) throw imageDiskError(i, disk.image ?? '?');
    const passed = input.files?.disks[i];
    if (passed !== undefined) {
      out.push(...passedDiskArgs(i, passed), '-device', diskDevice(i, bootIndex(input, i)));
      return;
    }
    const format = disk.format ?? input.detectedFormats?.[i];
    if (format === undefined) {
      // Letting qemu probe a raw image's format is a known escape (a guest can
      // write a qcow2 header into it), so the caller must decide.
      throw new DroverError('INVALID_SPEC', `Disk ${i + 1} (${disk.path}) has no known format.`, false);
    }
    const node = `disk${i}`;
    out.push(
      '-blockdev', `driver=file,node-name=${node}-file,filename=${escapeOptValue(disk.path)}`,
      '-blockdev', `driver=${format},node-name=${node},file=${node}-file`,
      '-device', diskDevice(i, bootIndex(input, i)),
    );
  });
  return out;
}

/** The fdset of disk i's k-th chain file (0: the disk's own file). */
export function fdsetOf(i: number, k: number): number {
  return i * 16 + k + 1;
}

/**
 * A disk whose files are fdsets: set i*16+k+1 for chain member k (a spec has
 * at most 16 disks, host-files.ts allows 16 files a chain). The top node is
 * disk<i> (snapshots and stats name it so); backing nodes disk<i>-b<k>, read
 * only; each qcow2 node names its backing node, null at the end of the chain
 * (JSON syntax: keyval has no null), so qemu opens no file name from a header.
 */
function passedDiskArgs(i: number, disk: PassedDisk): string[] {
  const out: string[] = [];
  disk.chain.forEach((file, k) => {
    const set = fdsetOf(i, k);
    for (const fd of file.fds) out.push('-add-fd', `fd=${fd},set=${set}`);
  });
  const nodeName = (k: number): string => (k === 0 ? `disk${i}` : `disk${i}-b${k}`);
  // Backing nodes first: -blockdev refers only to nodes defined before it.
  for (let k = disk.chain.length - 1; k >= 0; k--) {
    const file = disk.chain[k] as PassedFile;
    const readOnly = k > 0;
    const set = fdsetOf(i, k);
    const fileNode: Record<string, unknown> = { driver: 'file', 'node-name': `${nodeName(k)}-file`, filename: `/dev/fdset/${set}` };
    const fmtNode: Record<string, unknown> = { driver: file.format, 'node-name': nodeName(k), file: `${nodeName(k)}-file` };
    if (readOnly) {
      fileNode['read-only'] = true;
      fmtNode['read-only'] = true;
    }
    if (file.format === 'qcow2') fmtNode.backing = k + 1 < disk.chain.length ? nodeName(k + 1) : null;
    out.push('-blockdev', JSON.stringify(fileNode), '-blockdev', JSON.stringify(fmtNode));
  }
  return out;
}

function bootIndex(input: BuildQemuArgsInput, i: number): boolean {
  return i === 0 && !input.spec.boot;
}

function diskDevice(i: number, boot: boolean): string {
  const device = [`virtio-blk-pci`, `drive=disk${i}`, `id=disk${i}-dev`];
  if (boot) device.push('bootindex=0');
  return device.join(',');
}

/**
 * A Ceph RBD disk through qemu's rbd block driver (`pool/name`, validated by
 * the record schema, so neither part holds "," or "/"). The format layer on
 * top is raw unless the spec says qcow2.
 */
export function rbdDiskArgs(i: number, rbd: string, format: DiskFormat, boot: boolean, ceph?: CephOptions): string[] {
  const [pool = '', image = ''] = rbd.split('/');
  const node = `disk${i}`;
  const opts = [`driver=rbd`, `node-name=${node}-file`, `pool=${escapeOptValue(pool)}`, `image=${escapeOptValue(image)}`];
  if (ceph?.conf !== undefined) opts.push(`conf=${escapeOptValue(ceph.conf)}`);
  if (ceph?.user !== undefined) opts.push(`user=${escapeOptValue(ceph.user)}`);
  return [
    '-blockdev', opts.join(','),
    '-blockdev', `driver=${format},node-name=${node},file=${node}-file`,
    '-device', diskDevice(i, boot),
  ];
}

function nicArgs(uuid: string, spec: VmSpec): string[] {
  const out: string[] = [];
  (spec.nics ?? []).forEach((nic, i) => {
    const id = `net${i}`;
    const netdev = nic.network === 'user'
      ? `user,id=${id}`
      : `tap,id=${id},ifname=${escapeOptValue(tapName(uuid, i))},script=no,downscript=no`;
    out.push(
      '-netdev', netdev,
      '-device', `virtio-net-pci,netdev=${id},id=${id}-dev,mac=${escapeOptValue(nic.mac ?? defaultMac(uuid, i))}`,
    );
  });
  return out;
}
