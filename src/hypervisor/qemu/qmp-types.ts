/**
 * The slice of the QEMU Machine Protocol drover speaks, as types (STYLE.md 5).
 *
 * `QmpCommandMap` maps each command name to its arguments and its return
 * value; `QmpRequest` is the same map as a discriminated union on `execute`.
 * Each command says when it is legal. Only what drover uses, plus a few
 * obvious neighbours, is here: the full schema is qemu's `qapi/*.json`.
 */

/** An empty object, what most commands return. */
export type QmpEmpty = Record<string, never>;

/** qemu's RunState (qapi/run-state.json). */
export type QmpRunState =
  | 'debug'
  | 'inmigrate'
  | 'internal-error'
  | 'io-error'
  | 'paused'
  | 'postmigrate'
  | 'prelaunch'
  | 'finish-migrate'
  | 'restore-vm'
  | 'running'
  | 'save-vm'
  | 'shutdown'
  | 'suspended'
  | 'watchdog'
  | 'guest-panicked'
  | 'colo';

/** qemu's ShutdownCause: why SHUTDOWN / RESET happened. */
export type QmpShutdownCause =
  | 'none'
  | 'host-error'
  | 'host-qmp-quit'
  | 'host-qmp-system-reset'
  | 'host-signal'
  | 'host-ui'
  | 'guest-shutdown'
  | 'guest-reset'
  | 'guest-panic'
  | 'subsystem-reset'
  | 'snapshot-load';

export interface QmpStatusInfo {
  running: boolean;
  status: QmpRunState;
  singlestep?: boolean;
}

export interface QmpVersionInfo {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export interface QmpVncClientInfo {
  host: string;
  service: string;
  family: string;
  websocket: boolean;
}

export interface QmpVncInfo {
  enabled: boolean;
  /** The listening address: an IP address, or the socket path for `unix`. */
  host?: string;
  family?: 'ipv4' | 'ipv6' | 'unix' | 'unknown';
  /** The TCP port (as a string), or the socket path for `unix`. */
  service?: string;
  auth?: string;
  clients?: QmpVncClientInfo[];
}

/** qemu's SnapshotInfo: one internal snapshot of a qcow2 image. */
export interface QmpSnapshotInfo {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
  icount?: number;
}

/** One action of a `transaction` (only the kind drover uses). */
export type QmpTransactionAction = { type: 'blockdev-snapshot-internal-sync'; data: { device: string; name: string } };

export interface QmpBlockInfo {
  device: string;
  qdev?: string;
  type: string;
  removable: boolean;
  locked: boolean;
  inserted?: {
    file: string;
    'node-name'?: string;
    ro: boolean;
    drv: string;
    /** The image (format layer) with its internal snapshots. */
    image?: { filename: string; format: string; snapshots?: QmpSnapshotInfo[]; [key: string]: unknown };
    [key: string]: unknown;
  };
  'io-status'?: 'ok' | 'failed' | 'nospace';
}

export interface QmpBlockStats {
  device?: string;
  qdev?: string;
  'node-name'?: string;
  stats: {
    rd_bytes: number;
    wr_bytes: number;
    rd_operations: number;
    wr_operations: number;
    flush_operations: number;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** qemu's MigrationStatus (qapi/migration.json). */
export type QmpMigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover'
  | 'completed'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug';

export interface QmpMigrationRamStats {
  transferred: number;
  remaining: number;
  total: number;
  duplicate?: number;
  normal?: number;
  'dirty-pages-rate'?: number;
  mbps?: number;
  'dirty-sync-count'?: number;
  [key: string]: unknown;
}

/** What query-migrate returns; on an incoming side, `socket-address` tells the port qemu listens on (since 4.0). */
export interface QmpMigrationInfo {
  status?: QmpMigrationStatus;
  ram?: QmpMigrationRamStats;
  'total-time'?: number;
  'expected-downtime'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  'socket-address'?: Array<{ type: string; host?: string; port?: string; [key: string]: unknown }>;
  [key: string]: unknown;
}

/**
 * Command name → arguments and return value. `args: undefined` means the
 * command takes none.
 */
export interface QmpCommandMap {
  /** Legal only once, right after the greeting; leaves capabilities negotiation mode. */
  qmp_capabilities: { args: { enable?: string[] } | undefined; ret: QmpEmpty };
  /** Always legal. */
  'query-status': { args: undefined; ret: QmpStatusInfo };
  /** Always legal. */
  'query-version': { args: undefined; ret: QmpVersionInfo };
  /** Always legal; the name from `-name guest=`. */
  'query-name': { args: undefined; ret: { name?: string } };
  /** Always legal; the `-uuid`. */
  'query-uuid': { args: undefined; ret: { UUID: string } };
  /**
   * Presses the ACPI power button. Legal while running; the guest decides
   * whether to honour it (SHUTDOWN with guest: true follows if it does).
   */
  system_powerdown: { args: undefined; ret: QmpEmpty };
  /** Hard reset of the machine; legal in any state. */
  system_reset: { args: undefined; ret: QmpEmpty };
  /** qemu exits at once (SHUTDOWN host-qmp-quit); legal in any state. */
  quit: { args: undefined; ret: QmpEmpty };
  /** Resumes vCPUs; legal when paused (a no-op when running). */
  cont: { args: undefined; ret: QmpEmpty };
  /** Pauses vCPUs; legal when running (STOP follows). */
  stop: { args: undefined; ret: QmpEmpty };
  /** Always legal; `enabled: false` when qemu has no VNC server. */
  'query-vnc': { args: undefined; ret: QmpVncInfo };
  /** Sets the VNC server's password; legal when it was started with password=on (vnc_password_file). */
  'change-vnc-password': { args: { password: string }; ret: QmpEmpty };
  /** Always legal. */
  'query-block': { args: undefined; ret: QmpBlockInfo[] };
  /** Always legal. */
  'query-blockstats': { args: { 'query-nodes'?: boolean } | undefined; ret: QmpBlockStats[] };
  /** The guest's memory as the balloon device reports it; legal only when the VM has a balloon device (DeviceNotActive otherwise). */
  'query-balloon': { args: undefined; ret: { actual: number } };
  /** Starts an outgoing migration to `uri` (tcp:HOST:PORT); legal while running or paused. Progress through query-migrate. */
  migrate: { args: { uri: string }; ret: QmpEmpty };
  /** Cancels an outgoing migration; the source keeps running. */
  migrate_cancel: { args: undefined; ret: QmpEmpty };
  /** Legal only in a qemu started with `-incoming defer`: listens on `uri` (port 0: any free port). */
  'migrate-incoming': { args: { uri: string }; ret: QmpEmpty };
  /** Always legal: status and progress of the current (or last) migration, outgoing or incoming. */
  'query-migrate': { args: undefined; ret: QmpMigrationInfo };
  /** Tunes migration (bytes/s, ms); legal before a migration starts. */
  'migrate-set-parameters': { args: { 'max-bandwidth'?: number; 'downtime-limit'?: number }; ret: QmpEmpty };
  /**
   * Runs the actions all or none (qemu drains I/O first): drover takes an
   * internal snapshot of every disk at one point in time with it. Legal
   * while running or paused.
   */
  transaction: { args: { actions: QmpTransactionAction[] }; ret: QmpEmpty };
  /** Deletes an internal snapshot of a node (`device`: a node name such as disk0); returns what it deleted. */
  'blockdev-snapshot-delete-internal-sync': { args: { device: string; name: string }; ret: QmpSnapshotInfo };
  /** HMP passthrough for what QMP lacks; returns the HMP output. Always legal. */
  'human-monitor-command': { args: { 'command-line': string; 'cpu-index'?: number }; ret: string };
}

export type QmpCommandName = keyof QmpCommandMap;
export type QmpArgsOf<C extends QmpCommandName> = QmpCommandMap[C]['args'];
export type QmpReturnOf<C extends QmpCommandName> = QmpCommandMap[C]['ret'];

/** The argument list of `execute(cmd, ...)`: none, optional or required. */
export type QmpExecuteArgs<C extends QmpCommandName> = [QmpArgsOf<C>] extends [undefined]
  ? []
  : undefined extends QmpArgsOf<C>
    ? [args?: Exclude<QmpArgsOf<C>, undefined>]
    : [args: QmpArgsOf<C>];

/** What goes on the wire, as a discriminated union on `execute`. */
export type QmpRequest = {
  [C in QmpCommandName]: { execute: C; arguments?: Exclude<QmpArgsOf<C>, undefined>; id?: string };
}[QmpCommandName];

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

/** Event name → data (qapi/run-state.json and friends). */
export interface QmpEventMap {
  /** qemu is about to exit or reset; `guest: true` when the guest asked for it. */
  SHUTDOWN: { guest: boolean; reason: QmpShutdownCause };
  /** The ACPI power button was pressed (system_powerdown). */
  POWERDOWN: QmpEmpty;
  RESET: { guest: boolean; reason: QmpShutdownCause };
  /** vCPUs stopped (paused). */
  STOP: QmpEmpty;
  /** vCPUs resumed. */
  RESUME: QmpEmpty;
  SUSPEND: QmpEmpty;
  WAKEUP: QmpEmpty;
  GUEST_PANICKED: { action: 'pause' | 'poweroff' | 'run'; info?: unknown };
  BLOCK_IO_ERROR: { device: string; 'node-name'?: string; operation: 'read' | 'write'; action: string; reason: string };
  VNC_CONNECTED: { server: unknown; client: unknown };
  VNC_DISCONNECTED: { server: unknown; client: unknown };
  /** A migration changed status (sent when the `events` migration capability is on). */
  MIGRATION: { status: QmpMigrationStatus };
}

export type QmpEventName = keyof QmpEventMap;

export const QMP_EVENT_NAMES: readonly QmpEventName[] = [
  'SHUTDOWN',
  'POWERDOWN',
  'RESET',
  'STOP',
  'RESUME',
  'SUSPEND',
  'WAKEUP',
  'GUEST_PANICKED',
  'BLOCK_IO_ERROR',
  'VNC_CONNECTED',
  'VNC_DISCONNECTED',
  'MIGRATION',
];

/** A known event, discriminated on `event`. */
export type QmpEvent = {
  [E in QmpEventName]: { event: E; data: QmpEventMap[E]; timestamp: QmpTimestamp };
}[QmpEventName];

/** An event this file does not type. */
export interface QmpOtherEvent {
  event: string;
  data: unknown;
  timestamp: QmpTimestamp;
}

export interface QmpGreeting {
  QMP: {
    version: QmpVersionInfo;
    capabilities: string[];
  };
}

export interface QmpErrorBody {
  class: string;
  desc: string;
}

/** Everything qemu sends, one JSON object per line. */
export type QmpServerMessage =
  | QmpGreeting
  | { return: unknown; id?: string }
  | { error: QmpErrorBody; id?: string }
  | { event: string; data?: unknown; timestamp: QmpTimestamp };
