/**
 * Human units for the operator commands (`scan`, `host stats`): sizes and
 * rates in binary units (formatBytes, shared with the progress bar) and
 * elapsed times as `42s`, `5m07s`, `3h12m`, `2d03h`. Missing figures are
 * `-`, like every other empty cell.
 */
import { formatBytes } from './progress.js';

export const NOT_MEASURED = '-';

export function formatSize(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? NOT_MEASURED : formatBytes(bytes);
}

export function formatRate(bytesPerSecond: number | null | undefined): string {
  return bytesPerSecond === null || bytesPerSecond === undefined ? NOT_MEASURED : `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** The two largest units of an elapsed time: `42s`, `5m07s`, `3h12m`, `2d03h`. */
export function formatElapsed(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return NOT_MEASURED;
  const s = Math.max(0, Math.floor(seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
}

/** A number with `digits` decimals, or `-`. */
export function formatFixed(value: number | null | undefined, digits = 2): string {
  return value === null || value === undefined || !Number.isFinite(value) ? NOT_MEASURED : value.toFixed(digits);
}
