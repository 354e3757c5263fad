/**
 * The failover tests' disk proof (test/helpers/disk-marker.ts) on
 * hand-written disks: it accepts two boots one after the other and rejects
 * overlapping, torn, out-of-place or inconsistent records.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { assertSequentialBoots, bootProblems, markerBoots, parseMarkerDisk, REGION_SECTORS, SECTOR_BYTES } from '../helpers/disk-marker.js';

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';
const T = 1_795_000_000_000;

interface Rec {
  boot: string;
  region: number;
  n: number;
  ms: number;
  seen: string;
  sector?: number;
}

function disk(records: Rec[], raw: Array<{ sector: number; text: string }> = []): Buffer {
  const buf = Buffer.alloc(SECTOR_BYTES * REGION_SECTORS * 2);
  for (const r of records) {
    const sector = r.sector ?? r.region * REGION_SECTORS + (r.n % REGION_SECTORS);
    buf.write(`DROVER-MARK ${r.boot} ${r.region} ${r.n} ${r.ms} ${r.seen}`.padEnd(511) + '\n', sector * SECTOR_BYTES, 'latin1');
  }
  for (const r of raw) buf.write(r.text, r.sector * SECTOR_BYTES, 'latin1');
  return buf;
}

/** `count` records of one boot from counter `from`, 300 ms apart. */
const run = (boot: string, region: number, from: number, count: number, ms0: number, seen = '-'): Rec[] =>
  Array.from({ length: count }, (_, i) => ({ boot, region, n: from + i, ms: ms0 + i * 300, seen }));

const proof = (records: Rec[], raw: Array<{ sector: number; text: string }> = []): ReturnType<typeof assertSequentialBoots> =>
  assertSequentialBoots(parseMarkerDisk(disk(records, raw)), 2);

describe('disk marker proof', () => {
  it('accepts two boots in two regions, the second seeing the first\'s last record and starting well after it', () => {
    const p = proof([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 9 * 300 + 8000, `${A}:9`)]);
    assert.deepEqual(p.boots.map((b) => b.bootId), [A, B]);
    assert.equal(p.gapsMs[0], 8000);
    assert.deepEqual([...p.boots[1]!.seen], [[A, 9]]);
  });

  it('rejects an earlier boot that wrote on after the later one had read the disk, whatever the clocks say', () => {
    assert.throws(() => proof([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 20_000, `${A}:5`)]), /still writing after the later one booted/);
  });

  it('rejects a later boot that never saw the earlier one', () => {
    assert.throws(() => proof([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 20_000)]), /without seeing any record/);
  });

  it('rejects boots closer by their clocks than the clocks can disagree', () => {
    assert.throws(() => proof([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 9 * 300 + 1500, `${A}:9`)]), /rule out an overlap/);
    assert.throws(() => proof([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 1000, `${A}:9`)]), /rule out an overlap/);
  });

  it('rejects the wrong number of boots, a torn sector, a record out of place, a gap in the counter, a clock going back, a changing "seen"', () => {
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk(run(A, 0, 0, 5, T))), 2), /exactly 2 boots/);
    assert.throws(() => proof([...run(A, 0, 0, 5, T), ...run(B, 1, 0, 5, T + 9000, `${A}:4`)], [{ sector: 700, text: 'DROVER-MARK 2222' }]), /malformed/);
    const boot = (records: Rec[]): string => bootProblems(markerBoots(parseMarkerDisk(disk(records)).records)[0]!).join('\n');
    assert.match(boot([{ boot: A, region: 0, n: 0, ms: T, seen: '-' }, { boot: A, region: 0, n: 1, ms: T + 300, seen: '-', sector: 5 }]), /record 1 is in sector 5, its counter says 1/);
    assert.match(boot([...run(A, 0, 0, 2, T), ...run(A, 0, 3, 2, T + 900)]), /counter jumps from 1 to 3/);
    assert.match(boot([{ boot: A, region: 0, n: 0, ms: T, seen: '-' }, { boot: A, region: 0, n: 1, ms: T - 5, seen: '-' }]), /stamped before record 0/);
    assert.match(boot([{ boot: A, region: 0, n: 0, ms: T, seen: '-' }, { boot: A, region: 0, n: 1, ms: T + 300, seen: `${B}:3` }]), /says it saw/);
  });

  it('rejects a later boot that wrote over the earlier one\'s region (the earlier boot\'s first records are gone)', () => {
    assert.throws(() => proof([...run(A, 0, 0, 6, T), ...run(B, 0, 0, 3, T + 9000, `${A}:5`)]), /11111111-.* is consistent/);
  });
});
