/**
 * Watches /proc, independently of drover, for every qemu process whose argv
 * mentions a directory (a test's temp dir): each one is recorded once with
 * its pid, its start time (so a reused pid counts as another process), its
 * full argv as the kernel holds it (/proc/<pid>/cmdline) and the VM uuid of
 * its `-uuid` argument. The chaos scenarios count the processes that ran
 * each VM from it, and the fuzz scenario checks every argv qemu was given.
 *
 * Polled every `intervalMs` (100 ms by default): a qemu that lives shorter
 * than that can be missed, which is why the scenarios also check the
 * guests' own disk markers and drover's events.
 */
import { readdir, readFile } from 'node:fs/promises';

export interface SeenQemu {
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot. */
  startTime: string;
  argv: string[];
  uuid: string | null;
  firstSeenAt: number;
  lastSeenAt: number;
  /** Still there at the last poll (and not a zombie). */
  alive: boolean;
}

export class QemuWatch {
  private readonly seen = new Map<string, SeenQemu>();
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> = Promise.resolve();
  polls = 0;

  constructor(
    private readonly needles: readonly string[],
    private readonly intervalMs = 100,
  ) {}

  start(): this {
    const tick = (): void => {
      this.polling = this.poll().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.intervalMs);
      });
    };
    this.timer = setTimeout(tick, 0);
    return this;
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.polling;
    await this.poll();
  }

  /** Every qemu seen so far, in the order first seen. */
  all(): SeenQemu[] {
    return [...this.seen.values()];
  }

  /** The distinct qemu processes that ran one VM. */
  forVm(uuid: string): SeenQemu[] {
    return this.all().filter((q) => q.uuid === uuid);
  }

  async poll(): Promise<void> {
    this.polls++;
    const now = Date.now();
    const present = new Set<string>();
    for (const entry of await readdir('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const cmdline = await readFile(`/proc/${entry}/cmdline`, 'latin1').catch(() => '');
      if (!cmdline.includes('qemu-system') || !this.needles.some((n) => cmdline.includes(n))) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      if (stat === '') continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z') continue;
      const startTime = fields[22 - 3] ?? '?';
      const key = `${entry}:${startTime}`;
      present.add(key);
      const known = this.seen.get(key);
      if (known) {
        known.lastSeenAt = now;
        continue;
      }
      const argv = cmdline.split('\0');
      if (argv[argv.length - 1] === '') argv.pop();
      const u = argv.indexOf('-uuid');
      this.seen.set(key, { pid: Number(entry), startTime, argv, uuid: u >= 0 ? (argv[u + 1] ?? null) : null, firstSeenAt: now, lastSeenAt: now, alive: true });
    }
    for (const [key, q] of this.seen) q.alive = present.has(key);
  }

  /** VMs that more than one live qemu ran at the same poll: must stay empty. */
  overlaps(): string[] {
    const out: string[] = [];
    const list = this.all();
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (a.uuid !== null && a.uuid === b.uuid && a.firstSeenAt <= b.lastSeenAt && b.firstSeenAt <= a.lastSeenAt) {
          out.push(`VM ${a.uuid}: pid ${a.pid} and pid ${b.pid} both seen alive between ${Math.max(a.firstSeenAt, b.firstSeenAt)} and ${Math.min(a.lastSeenAt, b.lastSeenAt)}`);
        }
      }
    }
    return out;
  }
}
