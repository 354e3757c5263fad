// The APEL cloud record formatter (pure) and the accounting settings,
// read back with the independent APEL-syntax reader in apel-message.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  APEL_CLOUD_HEADER,
  formatCloudRecord,
  toApelValue,
  type CloudUsageRecord,
} from '../../src/observability/accounting/apel-cloud-record.js';
import { accountingSettingsSchema, DEFAULT_ACCOUNTING } from '../../src/observability/accounting/accounting-settings.js';
import { DEFAULT_FIZZLE_SECONDS } from '../../src/contract/pool-record.js';
import { checkCloudRecord, parseApelMessage } from './apel-message.js';

const base: CloudUsageRecord = {
  VMUUID: '0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11-1763881200250',
  SiteName: 'UKI-TEST-SITE',
  CloudComputeService: 'drover.example.org',
  MachineName: 'worker-01',
  LocalUserId: 'alice',
  LocalGroupId: 'workers',
  Status: 'completed',
  StartTime: 1763881200,
  EndTime: 1763884800,
  WallDuration: 3600,
  CpuDuration: 3500,
  CpuCount: 2,
  Memory: 2048,
  Disk: 20,
  ImageId: 'debian:12',
  CloudType: 'drover/0.1.0',
};

describe('APEL cloud record (v0.4)', () => {
  it('is a header, one Key: Value line per field in APEL order, and %%', () => {
    const { text, changed } = formatCloudRecord(base);
    assert.deepEqual(changed, []);
    assert.equal(text, [
      'APEL-cloud-message: v0.4',
      'VMUUID: 0b6f3a52-6c1e-4d8a-9d7e-2f4b9a1c0d11-1763881200250',
      'SiteName: UKI-TEST-SITE',
      'CloudComputeService: drover.example.org',
      'MachineName: worker-01',
      'LocalUserId: alice',
      'LocalGroupId: workers',
      'Status: completed',
      'StartTime: 1763881200',
      'EndTime: 1763884800',
      'WallDuration: 3600',
      'CpuDuration: 3500',
      'CpuCount: 2',
      'Memory: 2048',
      'Disk: 20',
      'ImageId: debian:12',
      'CloudType: drover/0.1.0',
      '%%',
      '',
    ].join('\n'));
    const msg = parseApelMessage(text);
    assert.deepEqual([msg.type, msg.version, msg.records.length], ['APEL-cloud-message', 'v0.4', 1]);
    checkCloudRecord(msg.records[0]!);
  });

  it('leaves out optional fields that are not given, keeps mandatory ones', () => {
    const { text } = formatCloudRecord({ ...base, LocalUserId: undefined, LocalGroupId: undefined, ImageId: undefined, Disk: undefined });
    const rec = parseApelMessage(text).records[0]!;
    for (const k of ['LocalUserId', 'LocalGroupId', 'ImageId', 'Disk']) assert.equal(rec.has(k), false, k);
    checkCloudRecord(rec);
    assert.throws(() => formatCloudRecord({ ...base, SiteName: '  ' }), /SiteName has no usable value/);
    assert.throws(() => formatCloudRecord({ ...base, VMUUID: 'None' }), /VMUUID has no usable value/);
  });

  it('refuses numbers APEL cannot store as integers', () => {
    assert.throws(() => formatCloudRecord({ ...base, CpuDuration: 1.5 }), /CpuDuration must be a non-negative integer/);
    assert.throws(() => formatCloudRecord({ ...base, WallDuration: -1 }), /WallDuration must be a non-negative integer/);
    assert.throws(() => formatCloudRecord({ ...base, Memory: Number.NaN }), /Memory must be a non-negative integer, not NaN/);
  });

  it('a hostile name cannot end the record or forge a field: it stays one line of one record', () => {
    const hostile = 'evil\n%%\nVMUUID: forged\r\nSiteName: FAKE\u2028CpuDuration: 999999\x85%%%x';
    const { text, changed } = formatCloudRecord({ ...base, MachineName: hostile, LocalUserId: 'b\u00f6b\tthe\u00a0admin' });
    const msg = parseApelMessage(text);
    assert.equal(msg.records.length, 1);
    const rec = msg.records[0]!;
    checkCloudRecord(rec);
    assert.equal(rec.get('VMUUID'), base.VMUUID);
    assert.equal(rec.get('SiteName'), 'UKI-TEST-SITE');
    assert.equal(rec.get('CpuDuration'), '3500');
    assert.equal(rec.get('MachineName'), 'evil % VMUUID: forged SiteName: FAKE CpuDuration: 999999 %x');
    assert.equal(rec.get('LocalUserId'), 'bob the admin');
    assert.equal(text.split('\n').length, 19, 'header, 16 fields, %%, final newline: no extra line');
    assert.deepEqual(changed.map((c) => c.field), ['MachineName', 'LocalUserId']);
    assert.equal(changed[0]!.from, hostile);
  });

  it('a value that is nothing but unusable characters is left out and reported', () => {
    const { text, changed } = formatCloudRecord({ ...base, LocalUserId: '\n\u2603\u2603\n' });
    assert.equal(parseApelMessage(text).records[0]!.has('LocalUserId'), false);
    assert.deepEqual(changed, [{ field: 'LocalUserId', from: '\n\u2603\u2603\n', to: null }]);
  });

  it('toApelValue: printable ASCII, no line breaks, no "%%", at most 255 characters', () => {
    const cases: Array<[string, string]> = [
      ['plain-name_1.2', 'plain-name_1.2'],
      ['  padded  ', 'padded'],
      ['a\r\nb\tc\vd\fe\u2028f\u2029g\x1eh\x85i', 'a b c d e f g h i'],
      ['100%% sure %%%%', '100% sure %'],
      ['Ünïcødé café', 'Unicde cafe'],
      ['日本', ''],
      ['x'.repeat(300), 'x'.repeat(255)],
    ];
    for (const [input, want] of cases) assert.equal(toApelValue(input), want, JSON.stringify(input));
    for (let i = 0; i < 0x3000; i++) {
      const v = toApelValue(`a${String.fromCharCode(i)}${String.fromCharCode(i)}b`);
      assert.match(v, /^[\x20-\x7e]*$/);
      assert.equal(v.includes('%%'), false);
    }
  });

  it('the header is the one APEL expects for cloud records', () => {
    assert.equal(APEL_CLOUD_HEADER, 'APEL-cloud-message: v0.4');
  });
});

describe('accounting settings', () => {
  it("default fizzle_seconds is the pools' (Vcycle's 600); no site name, no compute service", () => {
    assert.equal(DEFAULT_FIZZLE_SECONDS, 600);
    assert.deepEqual({ ...DEFAULT_ACCOUNTING }, { fizzle_seconds: 600 });
  });

  it('accepts GOCDB names and refuses values that could break a record', () => {
    assert.equal(accountingSettingsSchema.parse({ gocdb_sitename: 'UKI-NORTHGRID-MAN-HEP' }).gocdb_sitename, 'UKI-NORTHGRID-MAN-HEP');
    for (const bad of ['bad site', 'SITE\nVMUUID: x', '', 'a%%b', 'x'.repeat(101)]) {
      assert.equal(accountingSettingsSchema.safeParse({ gocdb_sitename: bad }).success, false, JSON.stringify(bad));
    }
    assert.equal(accountingSettingsSchema.parse({ apel_cloud_compute_service: 'Drover cloud at Example' }).apel_cloud_compute_service, 'Drover cloud at Example');
    for (const bad of ['a%%b', 'line\nbreak', ' padded', 'x'.repeat(256), 'caf\u00e9']) {
      assert.equal(accountingSettingsSchema.safeParse({ apel_cloud_compute_service: bad }).success, false, JSON.stringify(bad));
    }
    assert.equal(accountingSettingsSchema.safeParse({ fizzle_seconds: -1 }).success, false);
    assert.equal(accountingSettingsSchema.safeParse({ fizzle_seconds: 1.5 }).success, false);
  });
});
