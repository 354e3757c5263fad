/**
 * The agent's configuration: one schema for the check and the type (STYLE.md 7).
 *
 * Sources, later wins: the config file (TOML), then its `.d` directory's
 * `*.toml` files in alphanumeric order (Vcycle's rule), then the environment,
 * then command-line flags. Parsed once at the edge into a frozen object;
 * nothing deeper reads process.env.
 */
import { z } from 'zod';
import { HOST_NAME_RE } from '../contract/vm-record.js';
import { backupTransferShape } from '../storage/backup-settings.js';
import { accountingConfigShape } from '../observability/accounting/accounting-settings.js';
import { parseListen } from '../observability/metrics-server.js';

const seconds = (def: number, min = 0) => z.number().min(min).default(def);
const absolutePath = z.string().refine((p) => p.startsWith('/'), 'must be an absolute path');

/** The scheduler's keys, shared by `drover scheduler` and `drover agent --scheduler`. */
export const schedulerConfigShape = {
  /** spread (default): most free memory first; pack: fill hosts one by one. */
  scheduler_strategy: z.enum(['spread', 'pack']).default('spread'),
  /** MiB added to each VM's memory for qemu's own overhead when placing. */
  vm_memory_overhead: z.int().min(0).default(64),
  /** vCPUs a host may hand out per physical CPU. */
  cpu_overcommit: z.number().min(0.1).default(4),
  /** Seconds of the leader's election lease: how fast another scheduler takes over. */
  election_ttl: z.int().min(2).max(600).default(5),
  /** Seconds after a host's lease expired before its VMs are declared lost. */
  failover_margin: z.number().min(0).default(5),
};

export const agentConfigSchema = z.strictObject({
  name: z.string().regex(HOST_NAME_RE, 'must be a host name (letters, digits, ".", "_", "-")'),
  etcd: z.array(z.string().min(1)).min(1).default(['http://127.0.0.1:2379']),
  /** etcd's TLS (docs/security.md): the CA that signed etcd's certificate, and this host's client certificate (CN host-<name>) and key. */
  etcd_ca: absolutePath.optional(),
  etcd_cert: absolutePath.optional(),
  etcd_key: absolutePath.optional(),
  state_dir: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path'),
  prefix: z.string().default('/v1'),
  accel: z.enum(['kvm', 'tcg', 'auto']).default('auto'),
  /** Address reported in the host record; auto-detected when absent. */
  ip: z.string().optional(),
  /** MiB kept back for the host itself, never offered to VMs. */
  reserved_memory: z.int().min(0).default(512),
  /** Seconds between full resyncs (v2's periodic check). */
  resync_interval: seconds(300, 1),
  /** Seconds between host record heartbeats. */
  heartbeat_interval: seconds(10, 1),
  /** TTL in seconds of the agent's liveness lease. */
  lease_ttl: z.int().min(2).max(3600).default(10),
  /** Default seconds for a graceful stop before it is forced (spec.stop_timeout overrides). */
  stop_timeout: seconds(60),
  /** Unplanned exits within crash_window seconds that end in KILLED. */
  crash_limit: z.int().min(1).default(5),
  crash_window: seconds(600, 1),
  /** Restart backoff: first delay and cap, in seconds (Triton: 0.5 doubling to 30). */
  restart_backoff_min: seconds(0.5),
  restart_backoff_max: seconds(30),
  /** What to do with a qemu process no record designates to this host. */
  foreign_vms: z.enum(['report', 'stop']).default('report'),
  /**
   * Which qemu processes the foreign check looks at: every qemu-system process
   * on the machine, or only those whose argv mentions this agent's state dir
   * (for several agents sharing one machine, as in tests).
   */
  foreign_scope: z.enum(['all', 'state-dir']).default('all'),
  /** How many events to keep under P/log/ (oldest pruned at each resync). */
  event_retention: z.int().min(10).default(10000),
  notify_email: z.array(z.string().email()).default([]),
  smtp_url: z.string().optional(),
  notify_from: z.string().default('drover@localhost'),
  qemu_binary: z.string().default('qemu-system-x86_64'),
  /**
   * This host's S3 credentials, for an image store (or backups) in S3; both
   * or neither. Without them the AWS SDK's default chain applies (AWS_*
   * environment, ~/.aws, instance roles). Never stored in etcd.
   */
  s3_access_key_id: z.string().min(1).optional(),
  s3_secret_access_key: z.string().min(1).optional(),
  /** Downloads of an image into the host's cache tried before a start fails (a corrupt one is refused each time). */
  image_download_attempts: z.int().min(1).max(10).default(3),
  /** ceph.conf and cephx user (without "client.") for `rbd` disks; librados' defaults when absent. */
  ceph_conf: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
  ceph_user: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a cephx user name').optional(),
  /**
   * Path prefixes on storage every host shares (NFS, a cluster filesystem).
   * A VM with spec.failover may only use disks under these (or rbd).
   */
  shared_storage: z.array(z.string().refine((p) => p.startsWith('/'), 'must be absolute paths')).default([]),
  /**
   * Directories a VM record's host paths (path disks, kernel, initrd) must
   * lie in (docs/security.md, "Host paths"). When absent: the image cache
   * <state_dir>/images and, when the cluster's image store is a directory,
   * that directory. A VM's own run dir <state_dir>/vms/<uuid> is always allowed.
   */
  allowed_paths: z
    .array(z.string().refine((p) => p.startsWith('/') && !p.split('/').includes('..'), 'must be absolute paths without ".." segments'))
    .optional(),
  /** The unprivileged user every qemu runs as ("root": the agent's own user, unconfined; docs/security.md). */
  qemu_user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name').default('drover-qemu'),
  /** Where `vnc: "tcp"` listens: an IP address or host name; loopback unless set. */
  vnc_listen: z.string().regex(/^[A-Za-z0-9.:-]+$/, 'must be an IP address or host name').default('127.0.0.1'),
  /** A file whose first line is the password of `vnc: "tcp"` servers (VNC uses its first 8 characters). */
  vnc_password_file: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
  /** An x509 directory (ca-cert.pem, server-cert.pem, server-key.pem) for TLS on `vnc: "tcp"` servers; readable by qemu_user. */
  vnc_tls_dir: z.string().refine((p) => p.startsWith('/'), 'must be an absolute path').optional(),
  /** Address this host's qemu listens on for incoming live migrations; the host's `ip` when absent. */
  migration_address: z.string().optional(),
  /** Seconds a migration's source waits for the target to be ready. */
  migration_prepare_timeout: seconds(30, 1),
  /** Seconds a migration's transfer may take before it is cancelled (the VM stays on the source). */
  migration_timeout: seconds(600, 1),
  /** Seconds between re-reads of every VM's disk snapshots into its record (chunter's key; docs/snapshots.md). */
  snapshot_update_interval: seconds(900, 1),
  /** Backup and restore transfers (chunter's keys; docs/backups.md): part/chunk sizes, parallelism, preload. */
  ...backupTransferShape,
  /** APEL accounting (Vcycle's keys; docs/accounting.md): fizzle_seconds, gocdb_sitename, apel_cloud_compute_service. */
  ...accountingConfigShape,
  /** Seconds between samples of every VM (CPU, memory, disks, network) and the summary P/stats/<name> (chunter's update_services_interval; docs/metrics.md). */
  vm_stats_interval: seconds(10, 1),
  /** Seconds between process checks: one /proc read per VM and the heartbeat file (chunter's zonemon_interval). */
  process_check_interval: seconds(1, 0.1),
  /** Seconds between checks of the state dir's filesystem: free space and a write probe (chunter's zpool_interval). */
  storage_interval: seconds(15, 1),
  /** Seconds between reads of the host's memory and page cache (chunter's arc_interval). */
  memory_interval: seconds(30, 1),
  /** Percent of the state dir's filesystem free under which the agent reports host.storage_low. */
  storage_free_alarm: z.number().min(0).max(100).default(10),
  /** Where the Prometheus endpoint listens: HOST:PORT (port 0: any free port, logged) or "off". */
  metrics_listen: z
    .string()
    .refine((v) => {
      try {
        parseListen(v);
        return true;
      } catch {
        return false;
      }
    }, 'must be HOST:PORT (e.g. 127.0.0.1:9464, [::1]:9464) or "off"')
    .default('127.0.0.1:9464'),
  /**
   * Where this agent serves its VMs' consoles to API processes on other
   * machines (TLS, certificate pinned through the host record;
   * docs/consoles.md): HOST:PORT, "auto" (the host's address, any free
   * port) or "off".
   */
  console_listen: z.string().regex(/^(off|auto|\[?[^\s\]]+\]?:\d{1,5})$/, 'must be HOST:PORT, "auto" or "off"').default('auto'),
  /** Also run a scheduler in this agent (leader-elected with every other one). */
  scheduler: z.boolean().default(false),
  ...schedulerConfigShape,
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
})
  .refine((c) => (c.etcd_cert === undefined) === (c.etcd_key === undefined), { message: 'etcd_cert and etcd_key go together', path: ['etcd_cert'] })
  .refine((c) => c.etcd_cert === undefined || c.etcd_ca !== undefined, { message: "a client certificate needs etcd_ca, the CA that signed etcd's certificate", path: ['etcd_ca'] });

export type AgentConfig = Readonly<z.infer<typeof agentConfigSchema>>;

/** The agent's etcd TLS files, or null for plain HTTP. */
export function etcdTlsOf(config: Pick<AgentConfig, 'etcd_ca' | 'etcd_cert' | 'etcd_key'>): { ca: string; cert?: string; key?: string } | null {
  if (config.etcd_ca === undefined) return null;
  return { ca: config.etcd_ca, ...(config.etcd_cert !== undefined && config.etcd_key !== undefined ? { cert: config.etcd_cert, key: config.etcd_key } : {}) };
}

/** Keys a running agent cannot change (a reload keeps their running values). */
export const RESTART_KEYS = ['name', 'etcd', 'etcd_ca', 'etcd_cert', 'etcd_key', 'state_dir', 'prefix', 'accel', 'lease_ttl', 'qemu_binary', 'metrics_listen', 'console_listen', 'allowed_paths', 'qemu_user', 'vnc_listen', 'vnc_password_file', 'vnc_tls_dir'] as const;

/** The config after a reload to `next`: the restart keys keep their running values; `waiting` names those that changed. */
export function applyReload(current: AgentConfig, next: AgentConfig): { config: AgentConfig; waiting: string[] } {
  const waiting = RESTART_KEYS.filter((key) => JSON.stringify(next[key]) !== JSON.stringify(current[key]));
  return { config: Object.freeze({ ...next, ...Object.fromEntries(RESTART_KEYS.map((k) => [k, current[k]])) }) as AgentConfig, waiting };
}

/** What `drover scheduler` runs with: the prefix and the scheduler's keys. */
export const schedulerConfigSchema = z.strictObject({ prefix: z.string().default('/v1'), ...schedulerConfigShape });

/** Keys that were renamed or that people guess: say what to use instead. */
export const RENAMED_KEYS: Readonly<Record<string, string>> = {
  hostname: 'name',
  statedir: 'state_dir',
  'state-dir': 'state_dir',
  etcd_endpoints: 'etcd',
  resync: 'resync_interval',
  // chunter's interval names (seed 000)
  zonemon_interval: 'process_check_interval',
  update_services_interval: 'vm_stats_interval',
  zpool_interval: 'storage_interval',
  arc_interval: 'memory_interval',
  smtp: 'smtp_url',
  notify: 'notify_email',
  email: 'notify_email',
  reserved: 'reserved_memory',
  ttl: 'lease_ttl',
  site_name: 'gocdb_sitename',
  sitename: 'gocdb_sitename',
  // chunter's spellings (seed 000)
  max_paralell_uploads: 'max_parallel_uploads',
  paralell_downloads: 'parallel_downloads',
  max_paralell_downloads: 'max_parallel_downloads',
};
