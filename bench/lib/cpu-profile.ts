/**
 * A V8 CPU profile of a window of this thread (node:inspector), and a
 * summary of where it went: self time and inclusive time per function,
 * located by file and line. Inclusive time counts a function once per sample
 * even when it recurses.
 */
import { Session } from 'node:inspector/promises';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export class ThreadProfiler {
  private readonly session = new Session();

  async start(intervalUs = 250): Promise<void> {
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.setSamplingInterval', { interval: intervalUs });
    await this.session.post('Profiler.start');
  }

  async stop(): Promise<CpuProfile> {
    const { profile } = (await this.session.post('Profiler.stop')) as unknown as { profile: CpuProfile };
    await this.session.post('Profiler.disable');
    this.session.disconnect();
    return profile;
  }
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  totalMs: number;
}

function where(cf: CallFrame, repoRoot: string): string {
  if (!cf.url) return '(native)';
  let u = cf.url.replace(/^file:\/\//, '');
  if (u.startsWith(repoRoot)) u = u.slice(repoRoot.length);
  u = u.replace(/^.*\/node_modules\//, 'node_modules/');
  return `${u}:${cf.lineNumber + 1}`;
}

/** Self and inclusive milliseconds per function (name + location), largest self first. */
export function summarizeProfile(p: CpuProfile, repoRoot: string): { rows: ProfileRow[]; totalMs: number; idleMs: number; gcMs: number } {
  const samples = p.samples?.length ?? 0;
  const totalMs = (p.endTime - p.startTime) / 1000;
  const msPerHit = samples > 0 ? totalMs / samples : 0;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const keyOf = (n: ProfileNode): string => `${n.callFrame.functionName || '(anonymous)'}\u0000${where(n.callFrame, repoRoot)}`;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let idleMs = 0;
  let gcMs = 0;
  for (const n of p.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0) continue;
    const ms = hits * msPerHit;
    const k = keyOf(n);
    self.set(k, (self.get(k) ?? 0) + ms);
    if (n.callFrame.functionName === '(idle)') idleMs += ms;
    if (n.callFrame.functionName === '(garbage collector)') gcMs += ms;
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const kk = keyOf(byId.get(id)!);
      if (seen.has(kk)) continue;
      seen.add(kk);
      total.set(kk, (total.get(kk) ?? 0) + ms);
    }
  }
  const rows = [...total].map(([k, t]) => {
    const [name, loc] = k.split('\u0000') as [string, string];
    return { name, where: loc, selfMs: self.get(k) ?? 0, totalMs: t };
  });
  rows.sort((a, b) => b.selfMs - a.selfMs);
  return { rows, totalMs, idleMs, gcMs };
}
