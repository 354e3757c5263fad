/**
 * Default table columns. Kept apart from the listing code so that the
 * command definitions (help text) can name them without loading etcd or zod.
 */
export const DEFAULT_VM_COLUMNS: readonly string[] = ['uuid', 'name', 'host', 'status', 'memory', 'vcpus'];

/** Short column names for the spec fields everyone asks for (vmadm's "ram", "vcpus"). */
export const VM_FIELD_ALIASES: Readonly<Record<string, string>> = { memory: 'spec.memory', vcpus: 'spec.vcpus' };

export const DEFAULT_HOST_COLUMNS: readonly string[] = ['name', 'status', 'ip', 'cpus', 'memory', 'free_memory', 'vms', 'version', 'heartbeat_at'];
