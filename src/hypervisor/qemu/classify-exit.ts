/**
 * Why a qemu process ended, decided from what was seen before it did: a pure
 * function, so the rules sit in one place.
 *
 * Order matters: a stop the agent asked for wins over a guest power-off that
 * happened during it (the power button was ours), and a guest power-off
 * counts only when qemu announced it (SHUTDOWN with guest: true) before the
 * process went away.
 */
import type { ExitReason } from '../hypervisor.js';
import type { QmpShutdownCause } from './qmp-types.js';

export interface ExitFacts {
  /** stop() was in progress. */
  stopRequested: boolean;
  /** stop() gave up waiting for the guest after this many ms and killed qemu. */
  killedAfterMs?: number;
  /** stop() was forced (no graceful step). */
  forced?: boolean;
  /** The last SHUTDOWN event qemu sent, if any. */
  shutdown?: { guest: boolean; reason: QmpShutdownCause };
  /** Exit code and signal when this agent is qemu's parent; both null when unknown. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last line qemu wrote to its log during this agent's watch ('' when none). */
  lastLogLine: string;
}

export function classifyExit(f: ExitFacts): { reason: ExitReason; detail: string } {
  if (f.stopRequested) {
    if (f.killedAfterMs !== undefined) {
      return { reason: 'requested', detail: `The guest did not power off within ${f.killedAfterMs} ms, so qemu was killed.` };
    }
    return { reason: 'requested', detail: f.forced ? 'The VM was killed on request.' : 'The VM was stopped on request.' };
  }
  if (f.shutdown?.guest && f.shutdown.reason !== 'guest-panic') {
    return { reason: 'guest-poweroff', detail: 'The guest powered off.' };
  }
  const line = f.lastLogLine.replace(/\.$/, '');
  const withLine = (text: string): string => (line ? `${text}: ${line}.` : `${text}.`);
  if (f.shutdown?.reason === 'guest-panic') return { reason: 'crash', detail: withLine('The guest panicked') };
  if (f.signal) return { reason: 'crash', detail: `qemu was killed by ${f.signal}.` };
  if (f.code !== null) {
    const cause = f.code === 0 && f.shutdown ? ` after SHUTDOWN (${f.shutdown.reason})` : '';
    return { reason: 'crash', detail: withLine(`qemu exited with code ${f.code}${cause}`) };
  }
  if (f.shutdown) return { reason: 'crash', detail: withLine(`qemu exited after SHUTDOWN (${f.shutdown.reason})`) };
  return {
    reason: 'crash',
    detail: withLine('qemu exited unexpectedly (an earlier agent started it, so its exit status is unknown)'),
  };
}
