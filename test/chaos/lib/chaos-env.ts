/**
 * What every chaos scenario shares: its size from the environment (the
 * issue's full size by default, so `make test-chaos-short` can run a small
 * one in CI), a seeded random source (the seed is printed, and CHAOS_SEED
 * replays a run), and a report of counts and durations, printed as the test
 * ends and written to test-output/chaos/<scenario>.json for
 * docs/reliability.md.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../../helpers/agent-harness.js';

/** A positive integer from the environment variable `name`, or `full`. */
export function chaosSize(name: string, full: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return full;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(raw)}`);
  return n;
}

/** A small, fast, seeded generator (mulberry32): the same seed gives the same run of faults. */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** In [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)]!;
  }
}

/** CHAOS_SEED, or a fresh one (printed by the report, so a failing run can be replayed). */
export function chaosRng(): Rng {
  const raw = process.env.CHAOS_SEED;
  return new Rng(raw ? Number(raw) : Math.floor(Math.random() * 2 ** 31));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Durations are kept whole so a report can give count, median, 95th percentile and max. */
export class ChaosReport {
  private readonly started = Date.now();
  private readonly counts = new Map<string, number>();
  private readonly timings = new Map<string, number[]>();
  private readonly notes: string[] = [];

  constructor(
    readonly scenario: string,
    readonly seed: number,
    readonly sizes: Record<string, number>,
  ) {}

  count(name: string, by = 1): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + by);
  }

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  time(name: string, ms: number): void {
    const list = this.timings.get(name) ?? [];
    list.push(ms);
    this.timings.set(name, list);
  }

  timesOf(name: string): readonly number[] {
    return this.timings.get(name) ?? [];
  }

  note(text: string): void {
    this.notes.push(text);
  }

  summary(): Record<string, unknown> {
    const timings: Record<string, { n: number; median: number; p95: number; max: number }> = {};
    for (const [name, list] of this.timings) {
      const sorted = [...list].sort((a, b) => a - b);
      const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
      timings[name] = { n: sorted.length, median: at(0.5), p95: at(0.95), max: sorted[sorted.length - 1]! };
    }
    return {
      scenario: this.scenario,
      seed: this.seed,
      sizes: this.sizes,
      duration_s: Math.round((Date.now() - this.started) / 100) / 10,
      counts: Object.fromEntries(this.counts),
      timings_ms: timings,
      notes: this.notes,
    };
  }

  /** Prints the summary (as the test's output) and writes it to test-output/chaos/<scenario>.json. */
  async finish(print: (line: string) => void): Promise<Record<string, unknown>> {
    const s = this.summary();
    print(`chaos ${this.scenario}: ${JSON.stringify(s)}`);
    const dir = join(REPO_ROOT, 'test-output', 'chaos');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `${this.scenario}.json`), JSON.stringify(s, null, 2) + '\n');
    return s;
  }
}

/**
 * Copies the logs of a failed scenario (every *.log directly in `dir`: the
 * agents', etcd's) to test-output/chaos/logs-<scenario>/ before the
 * harness removes its temp dir.
 */
export async function keepLogs(dir: string, scenario: string): Promise<string> {
  const { copyFile, readdir } = await import('node:fs/promises');
  const out = join(REPO_ROOT, 'test-output', 'chaos', `logs-${scenario}`);
  await mkdir(out, { recursive: true });
  for (const f of await readdir(dir).catch(() => [])) if (f.endsWith('.log')) await copyFile(join(dir, f), join(out, f));
  return out;
}
