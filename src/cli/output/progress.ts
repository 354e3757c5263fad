/**
 * Byte progress on stderr, imgadm style:
 *
 *   upload debian-12  [=========>          ]  48%  96.0 MiB/200.0 MiB  31.2 MiB/s  ETA 0:03
 *
 * On a terminal one line is redrawn in place (at most 10 times a second);
 * elsewhere (a pipe, a log file) plain lines are written at every 10% (or
 * every 5 s when the total is unknown), and the last line says how long the
 * whole took. The rate is measured over the last few seconds, so the ETA
 * follows a transfer that speeds up or slows down.
 */

export { changesOnly } from '../../lib/changes-only.js';

export interface ProgressSnapshot {
  label: string;
  bytes: number;
  /** Unknown (a download without Content-Length) when undefined. */
  total?: number;
  /** Bytes per second; undefined before there is a measurement. */
  rate?: number;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]}`;
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** One progress line (no newline); `barWidth` 0 leaves the bar out. */
export function formatProgressLine(p: ProgressSnapshot, barWidth = 20): string {
  const parts = [p.label];
  if (p.total !== undefined && p.total > 0) {
    const frac = Math.min(1, p.bytes / p.total);
    if (barWidth > 0) {
      const full = Math.floor(frac * barWidth);
      const head = full < barWidth ? '>' : '';
      parts.push(`[${'='.repeat(full)}${head}${' '.repeat(Math.max(0, barWidth - full - head.length))}]`);
    }
    const percent = `${Math.floor(frac * 100)}%`;
    parts.push(barWidth > 0 ? percent.padStart(4) : percent, `${formatBytes(p.bytes)}/${formatBytes(p.total)}`);
  } else {
    parts.push(formatBytes(p.bytes));
  }
  parts.push(p.rate !== undefined ? `${formatBytes(p.rate)}/s` : '-/s');
  if (p.total !== undefined && p.rate !== undefined && p.rate > 0 && p.bytes < p.total) {
    parts.push(`ETA ${formatDuration((p.total - p.bytes) / p.rate)}`);
  }
  return parts.join('  ');
}

export interface ProgressOptions {
  label: string;
  total?: number;
  stream: NodeJS.WritableStream;
  /** Redraw in place; by default, whether `stream` is a TTY. */
  tty?: boolean;
  /** ms clock; Date.now by default. */
  now?: () => number;
}

const WINDOW_MS = 3000;

export class ProgressBar {
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly started: number;
  private readonly samples: Array<[number, number]> = [];
  private lastDraw = 0;
  private lastStep = -1;
  private bytes = 0;
  private finished = false;

  constructor(private readonly opts: ProgressOptions) {
    this.tty = opts.tty ?? (opts.stream as { isTTY?: boolean }).isTTY === true;
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    this.samples.push([this.started, 0]);
  }

  /** Bytes done so far (absolute, not a delta). */
  update(bytes: number): void {
    if (this.finished) return;
    this.bytes = bytes;
    const t = this.now();
    this.samples.push([t, bytes]);
    while (this.samples.length > 2 && t - this.samples[0]![0] > WINDOW_MS) this.samples.shift();
    if (this.tty) {
      if (t - this.lastDraw >= 100) this.draw(t);
      return;
    }
    const step = this.opts.total !== undefined && this.opts.total > 0 ? Math.floor((bytes / this.opts.total) * 10) : Math.floor((t - this.started) / 5000);
    if (step > this.lastStep && step < (this.opts.total !== undefined ? 10 : Infinity)) {
      this.lastStep = step;
      this.opts.stream.write(`${formatProgressLine(this.snapshot(), 0)}\n`);
    }
  }

  /** The last line: the whole transfer's size, average rate and time. */
  done(suffix = 'done'): void {
    if (this.finished) return;
    this.finished = true;
    const secs = Math.max(0.001, (this.now() - this.started) / 1000);
    const line = `${this.opts.label}  ${formatBytes(this.bytes)}  ${formatBytes(this.bytes / secs)}/s  ${formatDuration(secs)}  ${suffix}`;
    this.opts.stream.write(this.tty ? `\r\x1b[K${line}\n` : `${line}\n`);
  }

  /** Ends the bar without the summary (an error follows). */
  abort(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.tty) this.opts.stream.write('\n');
  }

  private rate(): number | undefined {
    const first = this.samples[0]!;
    const last = this.samples.at(-1)!;
    const dt = (last[0] - first[0]) / 1000;
    return dt >= 0.2 ? (last[1] - first[1]) / dt : undefined;
  }

  private snapshot(): ProgressSnapshot {
    const rate = this.rate();
    return { label: this.opts.label, bytes: this.bytes, ...(this.opts.total !== undefined ? { total: this.opts.total } : {}), ...(rate !== undefined ? { rate } : {}) };
  }

  private draw(t: number): void {
    this.lastDraw = t;
    this.opts.stream.write(`\r\x1b[K${formatProgressLine(this.snapshot())}`);
  }
}
