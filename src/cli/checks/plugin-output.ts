/**
 * Nagios plugin output (the Monitoring Plugins Development Guidelines): one
 * line on stdout, `SERVICE STATE - text | perfdata`, and the exit code
 * 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Perfdata items are
 * `'label'=value[UOM];[warn];[crit];[min];[max]`, warn and crit in the
 * guidelines' range syntax (`10:` alerts below 10, `600` above 600).
 *
 * The check commands deviate from the CLI's usual exit codes on purpose:
 * Nagios reads anything but 0 to 3 as UNKNOWN and a 2 as CRITICAL, so a bad
 * argument or an unreachable etcd is UNKNOWN (3) with its sentence in the
 * line, never 1 or 2. Kept free of etcd and zod: commands/checks.ts and
 * program.ts load it at start-up.
 */
import type { Command } from 'commander';

export const PLUGIN_EXIT = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type PluginState = keyof typeof PLUGIN_EXIT;

export interface PerfDatum {
  label: string;
  value: number;
  /** s, %, B or c (a counter); none for a plain number. */
  uom?: 's' | '%' | 'B' | 'c';
  /** A number (alert above it) or a range such as `10:` (alert below 10). */
  warn?: number | string;
  crit?: number | string;
  min?: number;
  max?: number;
}

export interface CheckResult {
  state: PluginState;
  /** One sentence (or a few clauses joined by "; "), no newline, no `|`. */
  text: string;
  perfdata: PerfDatum[];
}

/** The worse of two states: CRITICAL > WARNING > UNKNOWN > OK (the guidelines' order for combining). */
export function worse(a: PluginState, b: PluginState): PluginState {
  const rank: Record<PluginState, number> = { OK: 0, UNKNOWN: 1, WARNING: 2, CRITICAL: 3 };
  return rank[b] > rank[a] ? b : a;
}

/** Numbers without float noise (0.30000000000000004 → 0.3). */
function num(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}

export function formatPerfDatum(d: PerfDatum): string {
  const label = `'${d.label.replace(/'/g, "''")}'`;
  const field = (v: number | string | undefined) => (v === undefined ? '' : typeof v === 'number' ? num(v) : v);
  const fields = [`${num(d.value)}${d.uom ?? ''}`, field(d.warn), field(d.crit), field(d.min), field(d.max)];
  while (fields.length > 1 && fields[fields.length - 1] === '') fields.pop();
  return `${label}=${fields.join(';')}`;
}

export function formatPluginLine(service: string, r: CheckResult): string {
  const text = r.text.replace(/[\r\n]+/g, ' ').replace(/\|/g, '/');
  const perf = r.perfdata.length > 0 ? ` | ${r.perfdata.map(formatPerfDatum).join(' ')}` : '';
  return `${service} ${r.state} - ${text}${perf}\n`;
}

/** Thrown once a check has printed its line, so the CLI's edge exits with its plugin code. */
export class PluginExit extends Error {
  override readonly name = 'PluginExit';
  constructor(readonly exitCode: number) {
    super(`plugin exit ${exitCode}`);
  }
}

/** Which commands are plugins, and their service word (for usage errors, which commander raises before the action). */
const pluginServices = new WeakMap<Command, string>();

export function markPluginCommand(cmd: Command, service: string): Command {
  pluginServices.set(cmd, service);
  return cmd;
}

export function pluginService(cmd: Command): string | undefined {
  return pluginServices.get(cmd);
}
