/**
 * The disk the marker guest (scripts/build-guest.sh, initrd-disk-marker.gz)
 * writes, and the proof the failover tests draw from it: that no two copies
 * of a VM ever ran at once.
 *
 * Layout (the script's header says the same): 8 regions of 1024 sectors of
 * 512 bytes. At boot a guest reads the whole disk once and notes, for every
 * earlier boot, the last counter it finds ("seen"), and claims the first
 * region no boot used. Then, every 250 ms, it writes record n into sector
 * `region * 1024 + n mod 1024`:
 *
 *     DROVER-MARK <boot_id> <region> <n> <epoch_ms> <seen>   (space-padded, 512 bytes)
 *
 * Two checks come out of it. Without any clock: if an earlier copy wrote
 * anything after a later copy had booted and read the disk, the earlier
 * copy's last counter on the disk is beyond what the later one saw. With
 * the guests' clocks: the earlier copy's last record is stamped before the
 * later copy's first, by more than the clocks can disagree.
 *
 * The guests' clocks: epoch_ms is the guest's system clock, which the kernel
 * set at boot from the emulated RTC (rtc_hctosys: the RTC's whole seconds +
 * 0.5 s). qemu's RTC counts whole seconds from the host's UTC truncated to
 * the second at qemu's start, so a guest's clock is up to 1.5 s behind and
 * 0.5 s ahead of the host (measured on the test machine: 0.15-1.05 s
 * behind), and two guests' clocks disagree by less than 2 s. Each bound
 * below adds 100 ms for the kernel's read and the TSC's drift.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { pidAlive } from './agent-harness.js';
import type { GuestFiles } from './guest.js';

export const SECTOR_BYTES = 512;
export const REGION_SECTORS = 1024;
export const REGIONS = 8;
/** The disk file's size: every region. */
export const MARKER_DISK_BYTES = SECTOR_BYTES * REGION_SECTORS * REGIONS;
/** How far a guest's clock may be behind the host's (host time of a stamp <= epoch_ms + this). */
export const GUEST_CLOCK_BEHIND_MS = 1600;
/** How far a guest's clock may be ahead of the host's (host time of a stamp >= epoch_ms - this). */
export const GUEST_CLOCK_AHEAD_MS = 600;
/** How far apart two guests' clocks may be. */
export const CLOCK_TOLERANCE_MS = GUEST_CLOCK_BEHIND_MS + GUEST_CLOCK_AHEAD_MS;

const BOOT_ID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const RECORD_RE = new RegExp(`^DROVER-MARK (${BOOT_ID}) (\\d+) (\\d+) (\\d{13}) (-|${BOOT_ID}:\\d+(?:,${BOOT_ID}:\\d+)*)\\s*$`);

export interface MarkRecord {
  bootId: string;
  region: number;
  n: number;
  /** The guest's clock, epoch ms. */
  ms: number;
  /** What the boot found on the disk when it started: earlier boot id -> its last counter. */
  seen: string;
  /** The sector the record was found in. */
  sector: number;
}

export interface MarkerBoot {
  bootId: string;
  region: number;
  /** Sorted by n. */
  records: MarkRecord[];
  first: MarkRecord;
  last: MarkRecord;
  /** What the boot found on the disk when it started: earlier boot id -> its last counter. */
  seen: Map<string, number>;
}

/** A zero-filled marker disk (sparse), ready for a raw `spec.disks` entry. */
export async function createMarkerDisk(path: string): Promise<void> {
  await writeFile(path, Buffer.alloc(0), { flag: 'wx' });
  await truncate(path, MARKER_DISK_BYTES);
}

/**
 * The spec fields of a failover VM that boots the marker guest from `disk`
 * (raw; put it under the agents' shared_storage). vcpus and memory are the
 * caller's (the agent harness's createVm fills them).
 */
export function markerVmSpec(guest: GuestFiles, disk: string): { failover: true; disks: Array<{ path: string; format: 'raw' }>; boot: { kernel: string; initrd: string; cmdline: string } } {
  return {
    failover: true,
    disks: [{ path: disk, format: 'raw' }],
    boot: { kernel: guest.kernel, initrd: guest.initrdDiskMarker, cmdline: 'console=ttyS0 quiet' },
  };
}

/**
 * Every record on the disk. A sector that starts with "DROVER-MARK" but does
 * not parse (torn, or written by something else) is reported in `malformed`,
 * which a proof must treat as a failure, not skip.
 */
export function parseMarkerDisk(disk: Buffer): { records: MarkRecord[]; malformed: Array<{ sector: number; text: string }> } {
  const records: MarkRecord[] = [];
  const malformed: Array<{ sector: number; text: string }> = [];
  const sectors = Math.floor(disk.length / SECTOR_BYTES);
  for (let sector = 0; sector < sectors; sector++) {
    const at = sector * SECTOR_BYTES;
    if (disk[at] === 0) continue; // never written
    const text = disk.toString('latin1', at, at + SECTOR_BYTES).replace(/\0+$/, '');
    const m = RECORD_RE.exec(text);
    if (!m) {
      malformed.push({ sector, text: text.trimEnd().slice(0, 120) });
      continue;
    }
    records.push({ bootId: m[1]!, region: Number(m[2]), n: Number(m[3]), ms: Number(m[4]), seen: m[5]!, sector });
  }
  return { records, malformed };
}

export async function readMarkerDisk(path: string): Promise<{ records: MarkRecord[]; malformed: Array<{ sector: number; text: string }> }> {
  return parseMarkerDisk(await readFile(path));
}

/** The records grouped by boot, each boot's sorted by n; boots ordered by their first stamp. */
export function markerBoots(records: readonly MarkRecord[]): MarkerBoot[] {
  const by = new Map<string, MarkRecord[]>();
  for (const r of records) {
    const list = by.get(r.bootId) ?? [];
    list.push(r);
    by.set(r.bootId, list);
  }
  const boots: MarkerBoot[] = [];
  for (const [bootId, list] of by) {
    list.sort((a, b) => a.n - b.n);
    const seen = new Map<string, number>();
    if (list[0]!.seen !== '-') {
      for (const part of list[0]!.seen.split(',')) seen.set(part.slice(0, part.lastIndexOf(':')), Number(part.slice(part.lastIndexOf(':') + 1)));
    }
    boots.push({ bootId, region: list[0]!.region, records: list, first: list[0]!, last: list[list.length - 1]!, seen });
  }
  return boots.sort((a, b) => a.first.ms - b.first.ms);
}

/**
 * What is wrong with one boot's records, if anything: every record in its
 * region and in the sector its counter names, the counters without a gap
 * (only the oldest may have been overwritten by the ring wrapping), and the
 * guest's clock never going back from one record to the next.
 */
export function bootProblems(boot: MarkerBoot): string[] {
  const problems: string[] = [];
  const id = boot.bootId.slice(0, 8);
  for (const r of boot.records) {
    if (r.region !== boot.region) problems.push(`boot ${id}: record ${r.n} says region ${r.region}, its first says ${boot.region}`);
    if (r.seen !== boot.first.seen) problems.push(`boot ${id}: record ${r.n} says it saw ${r.seen}, its first says ${boot.first.seen}`);
    const want = r.region * REGION_SECTORS + (r.n % REGION_SECTORS);
    if (r.sector !== want) problems.push(`boot ${id}: record ${r.n} is in sector ${r.sector}, its counter says ${want}`);
  }
  for (let i = 1; i < boot.records.length; i++) {
    const a = boot.records[i - 1]!;
    const b = boot.records[i]!;
    if (b.n !== a.n + 1) problems.push(`boot ${id}: counter jumps from ${a.n} to ${b.n}`);
    if (b.ms < a.ms) problems.push(`boot ${id}: record ${b.n} (${b.ms}) is stamped before record ${a.n} (${a.ms})`);
  }
  if (boot.first.n !== 0 && boot.records.length < REGION_SECTORS) problems.push(`boot ${id}: its first record is ${boot.first.n}, not 0, although the ring has not wrapped`);
  return problems;
}

export interface SequentialProof {
  /** Ordered by first stamp. */
  boots: MarkerBoot[];
  /** Guest-clock gap between each boot's last record and the next boot's first, ms. */
  gapsMs: number[];
}

/**
 * The proof that the VM's copies ran one after another on its disk: exactly
 * `expectBoots` boots wrote records, each boot's records are consistent
 * (bootProblems), no sector is malformed, and for each boot after the first:
 *
 *  - without clocks: when it started it saw the previous boot's records, and
 *    the previous boot wrote nothing after that (its last counter on the
 *    disk is the one the later boot saw);
 *  - with the guests' clocks: the previous boot's last record is stamped more
 *    than `toleranceMs` (how far the clocks may disagree) before the later
 *    boot's first, so the later copy began only after the earlier one had
 *    stopped writing, whatever the clocks' error;
 *  - it found the earlier boot's region taken and used another.
 *
 * Throws (AssertionError) otherwise, with every boot summarised.
 */
export function assertSequentialBoots(
  disk: { records: readonly MarkRecord[]; malformed: ReadonlyArray<{ sector: number; text: string }> },
  expectBoots: number,
  toleranceMs = CLOCK_TOLERANCE_MS,
): SequentialProof {
  const boots = markerBoots(disk.records);
  const summary = boots.map((b) => `${b.bootId.slice(0, 8)}: region ${b.region}, n ${b.first.n}..${b.last.n}, ${b.first.ms}..${b.last.ms}`).join('; ');
  assert.deepEqual(disk.malformed, [], `no malformed marker sector (boots: ${summary})`);
  assert.equal(boots.length, expectBoots, `exactly ${expectBoots} boots wrote the disk (${summary})`);
  for (const b of boots) assert.deepEqual(bootProblems(b), [], `boot ${b.bootId} is consistent`);
  const gapsMs: number[] = [];
  for (let i = 1; i < boots.length; i++) {
    const prev = boots[i - 1]!;
    const next = boots[i]!;
    const saw = next.seen.get(prev.bootId);
    assert.ok(saw !== undefined, `boot ${next.bootId.slice(0, 8)} started without seeing any record of boot ${prev.bootId.slice(0, 8)} on the disk (${summary})`);
    assert.equal(
      prev.last.n,
      saw,
      `boot ${prev.bootId.slice(0, 8)} wrote up to record ${prev.last.n}, but boot ${next.bootId.slice(0, 8)} found only up to ${saw} when it started: ` +
        `the earlier copy was still writing after the later one booted (${summary})`,
    );
    const gap = next.first.ms - prev.last.ms;
    gapsMs.push(gap);
    assert.ok(
      gap > toleranceMs,
      `boot ${next.bootId.slice(0, 8)} wrote its first record ${gap} ms after boot ${prev.bootId.slice(0, 8)} wrote its last; ` +
        `more than ${toleranceMs} ms is needed to rule out an overlap (${summary})`,
    );
    assert.notEqual(next.region, prev.region, 'the later boot found the earlier one\'s region taken and used another');
  }
  return { boots, gapsMs };
}

/** Polls the disk until `test` holds for its boots; resolves with them. */
export async function waitForMarkers(path: string, test: (boots: MarkerBoot[]) => boolean, timeoutMs: number, what: string): Promise<MarkerBoot[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const boots = markerBoots((await readMarkerDisk(path).catch(() => ({ records: [] }))).records);
    if (test(boots)) return boots;
    if (Date.now() > deadline) {
      const summary = boots.map((b) => `${b.bootId.slice(0, 8)}: n ${b.first.n}..${b.last.n}`).join('; ') || 'no records';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} on ${path} (${summary})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The open file description locks (qemu's image locking, fencing layer 3)
 * held on a file, as /proc/locks lists them: `OFDLCK ADVISORY READ -1
 * MAJ:MIN:INODE START END`. qemu takes shared locks on bytes 100+ (the
 * permissions it holds) and 200+ (those it does not share); a second qemu
 * asking for write access tests those bytes and is refused.
 */
export async function ofdLocksOn(path: string): Promise<string[]> {
  const st = await stat(path);
  const major = Math.floor(st.dev / 256) & 0xfff;
  const minor = (st.dev & 0xff) | ((Math.floor(st.dev / 4096) & 0xfff00) >>> 0);
  const hex = (v: number): string => v.toString(16).padStart(2, '0');
  const id = `${hex(major)}:${hex(minor)}:${st.ino}`;
  const text = await readFile('/proc/locks', 'utf8');
  return text.split('\n').filter((l) => /\bOFDLCK\b/.test(l) && l.split(/\s+/).includes(id));
}

/** The qemu processes that could be writing a disk: argv mentions `needle` (a VM's uuid, a path), not zombies. */
export async function liveQemus(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes('qemu-system') && cmd.includes(needle) && pidAlive(Number(p))) pids.push(Number(p));
  }
  return pids;
}

/** The marker records a serial log shows, in order: boot id and counter ('' and [] when there is no log yet). */
export async function serialMarks(path: string): Promise<Array<{ boot: string; n: number }>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return [...text.matchAll(/^DROVER-MARK ([0-9a-f-]{36}) \d+ (\d+) /gm)].map((m) => ({ boot: m[1]!, n: Number(m[2]) }));
}
