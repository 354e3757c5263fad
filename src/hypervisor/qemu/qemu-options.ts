/**
 * What a QemuHypervisor is built with (run-agent.ts fills it from the agent
 * config; tests hand in their own). The confinement settings are required,
 * so no caller gets an unconfined qemu by forgetting one: qemuUser null and
 * an allow-list are explicit choices (docs/security.md).
 */
import type { Logger } from '../../lib/logger.js';
import type { Accel } from '../hypervisor.js';
import type { CephOptions } from './build-qemu-args.js';
import type { QemuUser } from './qemu-user.js';
import type { VmCgroups } from './vm-cgroup.js';

/** How `vnc: "tcp"` is served (agent config vnc_listen, vnc_password_file, vnc_tls_dir). */
export interface VncTcpOptions {
  /** The address it listens on; 127.0.0.1 unless set. */
  listen?: string;
  /** A file whose first line is the VNC password (VNC's own auth uses its first 8 characters). */
  passwordFile?: string;
  /** An x509 directory for VNC's TLS (ca-cert.pem, server-cert.pem, server-key.pem), readable by qemu's user. */
  tlsDir?: string;
}

export interface QemuHypervisorOptions {
  /** Each VM gets runRoot/<uuid>/ (mode 0700, owned by qemuUser). */
  runRoot: string;
  accel: Accel;
  /**
   * Directories a record's host paths (path disks, kernel, initrd) must lie
   * in (config allowed_paths; a VM's own run dir is always allowed), or a
   * function read at each start.
   */
  allowedPaths: readonly string[] | (() => Promise<readonly string[]>);
  /** The unprivileged user qemu runs as (qemu-user.ts); null: the agent's own user. */
  qemuUser: QemuUser | null;
  /** Per-VM cgroups; a probing VmCgroups by default, null for none. */
  cgroups?: VmCgroups | null;
  /** qemu-system-x86_64 (on PATH) by default. */
  qemuBinary?: string;
  /** iproute2's `ip`, for tap devices; `ip` on PATH by default. */
  ipBinary?: string;
  logger?: Logger;
  /** `vnc: "tcp"`: needs passwordFile or tlsDir, or such VMs end in ERROR. */
  vnc?: VncTcpOptions;
  /** How long start() waits for QMP to report the VM running; 30 s by default. */
  startTimeoutMs?: number;
  /** How long recover() waits for a QMP greeting; 5 s by default. */
  recoverTimeoutMs?: number;
  /** qemu-img, for the snapshots of VMs that are not running; `qemu-img` on PATH by default. */
  qemuImgBinary?: string;
  /** How qemu reaches Ceph for `rbd` disks (config ceph_conf, ceph_user). */
  ceph?: CephOptions;
}
