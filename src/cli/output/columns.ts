/**
 * Default table columns. Kept apart from the listing code so that the
 * command definitions (help text) can name them without loading etcd or zod.
 */
export const DEFAULT_VM_COLUMNS: readonly string[] = ['uuid', 'name', 'host', 'status', 'memory', 'vcpus'];

/** Short column names for the spec fields everyone asks for (vmadm's "ram", "vcpus"). */
export const VM_FIELD_ALIASES: Readonly<Record<string, string>> = { memory: 'spec.memory', vcpus: 'spec.vcpus' };

export const DEFAULT_HOST_COLUMNS: readonly string[] = ['name', 'status', 'ip', 'cpus', 'memory', 'free_memory', 'vms', 'version', 'heartbeat_at'];

/** `drover scan`'s default columns (docs/cli.md); each is a short name for a field of its JSON rows. */
export const DEFAULT_SCAN_COLUMNS: readonly string[] = ['name', 'host', 'status', 'vcpus', 'memory', 'cpu', 'wall', 'uptime', 'disk_read', 'disk_write', 'net_rx', 'net_tx'];

/** Short column names of `drover scan` for the fields of its JSON rows. */
export const SCAN_FIELD_ALIASES: Readonly<Record<string, string>> = {
  cpu: 'cpu_load',
  cpu_time: 'cpu_seconds',
  wall: 'wall_seconds',
  uptime: 'uptime_seconds',
  rss: 'rss_bytes',
  disk_read: 'disk_read_bps',
  disk_write: 'disk_write_bps',
  net_rx: 'net_rx_bps',
  net_tx: 'net_tx_bps',
  age: 'stats_age_seconds',
};
