/**
 * What every command module is handed: the environment as read once at the
 * edge (main.ts), and the process's streams. Commands never touch
 * `process.env` or `process.stdout` themselves, so tests and future commands
 * (agent, up) see one consistent, frozen view.
 */
export interface CliIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Opened only when a command reads it (`vm create -f -`). */
  stdin(): NodeJS.ReadableStream;
}

/** The `DROVER_*` environment variables, copied once and frozen. */
export type CliEnv = Readonly<Record<string, string | undefined>>;

export interface CliContext {
  readonly env: CliEnv;
  readonly io: CliIo;
}

/** Copies the non-empty `DROVER_*` variables; nothing else in drover reads the environment. */
export function readCliEnv(env: NodeJS.ProcessEnv): CliEnv {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('DROVER_') && v !== undefined && v.trim() !== '') out[k] = v;
  }
  return Object.freeze(out);
}
