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

function disk(records: Array<{ boot: string; region: number; n: number; ms: number; sector?: number }>, raw: Array<{ sector: number; text: string }> = []): Buffer {
  const buf = Buffer.alloc(SECTOR_BYTES * REGION_SECTORS * 2);
  for (const r of records) {
    const sector = r.sector ?? r.region * REGION_SECTORS + (r.n % REGION_SECTORS);
    buf.write(`DROVER-MARK ${r.boot} ${r.region} ${r.n} ${r.ms}`.padEnd(511) + '\n', sector * SECTOR_BYTES, 'latin1');
  }
  for (const r of raw) buf.write(r.text, r.sector * SECTOR_BYTES, 'latin1');
  return buf;
}

const run = (boot: string, region: number, from: number, count: number, ms0: number): Array<{ boot: string; region: number; n: number; ms: number }> =>
  Array.from({ length: count }, (_, i) => ({ boot, region, n: from + i, ms: ms0 + i * 300 }));

describe('disk marker proof', () => {
  it('accepts two boots in two regions, the second starting well after the first stopped', () => {
    const proof = assertSequentialBoots(parseMarkerDisk(disk([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 10 * 300 + 8000)])), 2);
    assert.deepEqual(proof.boots.map((b) => b.bootId), [A, B]);
    assert.equal(proof.gapsMs[0], 8300);
  });

  it('rejects overlapping boots, and boots closer than the clock tolerance', () => {
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk([...run(A, 0, 0, 10, T), ...run(B, 1, 0, 5, T + 1500)])), 2), /rule out an overlap/);
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk([...run(A, 0, 0, 3, T), ...run(B, 1, 0, 3, T + 600 + 900)])), 2), /rule out an overlap/);
  });

  it('rejects the wrong number of boots, a torn sector, a record out of place, a gap in the counter, a clock going back', () => {
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk(run(A, 0, 0, 5, T))), 2), /exactly 2 boots/);
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk([...run(A, 0, 0, 5, T), ...run(B, 1, 0, 5, T + 9000)], [{ sector: 700, text: 'DROVER-MARK 2222' }])), 2), /malformed/);
    const misplaced = markerBoots(parseMarkerDisk(disk([{ boot: A, region: 0, n: 0, ms: T }, { boot: A, region: 0, n: 1, ms: T + 300, sector: 5 }])).records);
    assert.match(bootProblems(misplaced[0]!).join('\n'), /record 1 is in sector 5, its counter says 1/);
    const gap = markerBoots(parseMarkerDisk(disk([...run(A, 0, 0, 2, T), ...run(A, 0, 3, 2, T + 900)])).records);
    assert.match(bootProblems(gap[0]!).join('\n'), /counter jumps from 1 to 3/);
    const back = markerBoots(parseMarkerDisk(disk([{ boot: A, region: 0, n: 0, ms: T }, { boot: A, region: 0, n: 1, ms: T - 5 }])).records);
    assert.match(bootProblems(back[0]!).join('\n'), /stamped before record 0/);
  });

  it('rejects a later boot that wrote over the earlier one\'s region (the earlier boot\'s first records are gone)', () => {
    assert.throws(() => assertSequentialBoots(parseMarkerDisk(disk([...run(A, 0, 0, 6, T), ...run(B, 0, 0, 3, T + 9000)])), 2), /11111111-.* is consistent/);
  });
});
