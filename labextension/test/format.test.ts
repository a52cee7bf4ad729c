// The Models view's sizes, speeds, times, pull progress and alias flag rows.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { flagArgs, flagRows, formatBytes, formatEta, formatParams, formatSpeed, formatTokens, pullFraction, pullSummary, typedValue } from '../src/models/format';

test('sizes in decimal units, short enough for a badge', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1000), '1.0 KB');
  assert.equal(formatBytes(98_214_528), '98 MB');
  assert.equal(formatBytes(4_200_000), '4.2 MB');
  assert.equal(formatBytes(7.5e9), '7.5 GB');
  assert.equal(formatBytes(3e15), '3000 TB');
  assert.equal(formatBytes(null), '—');
  assert.equal(formatBytes(-1), '—');
  assert.equal(formatBytes(NaN), '—');
});

test('a speed is a size per second, and nothing while unknown', () => {
  assert.equal(formatSpeed(4_200_000), '4.2 MB/s');
  assert.equal(formatSpeed(0), '0 B/s');
  assert.equal(formatSpeed(null), '');
  assert.equal(formatSpeed(undefined), '');
});

test('time left reads as a person says it', () => {
  assert.equal(formatEta(0), '0 s');
  assert.equal(formatEta(0.2), '1 s');
  assert.equal(formatEta(59), '59 s');
  assert.equal(formatEta(59.5), '1 min');
  assert.equal(formatEta(60), '1 min');
  assert.equal(formatEta(200), '3 min 20 s');
  assert.equal(formatEta(3600), '1 h');
  assert.equal(formatEta(3900), '1 h 5 min');
  assert.equal(formatEta(null), '');
  assert.equal(formatEta(Infinity), '');
  assert.equal(formatEta(-3), '');
});

test('parameter counts and context lengths as model cards write them', () => {
  assert.equal(formatParams(134_515_008), '135M');
  assert.equal(formatParams(1_543_714_304), '1.5B');
  assert.equal(formatParams(7_000_000_000), '7B');
  assert.equal(formatParams(22_700_000), '23M');
  assert.equal(formatParams(null), '');
  assert.equal(formatParams(0), '');
  assert.equal(formatTokens(8192), '8K');
  assert.equal(formatTokens(2000), '2000');
  assert.equal(formatTokens(null), '');
});

test("a pull's progress: a fraction once the total is known, a summary while it runs", () => {
  assert.equal(pullFraction(50, 200), 0.25);
  assert.equal(pullFraction(300, 200), 1);
  assert.equal(pullFraction(10, null), null);
  assert.equal(pullFraction(10, 0), null);
  const running = { state: 'running', bytes_done: 12_000_000, bytes_total: 98_000_000, speed: 4_200_000, eta_s: 20.4 };
  assert.equal(pullSummary(running), '12 MB of 98 MB · 4.2 MB/s · 21 s left');
  assert.equal(pullSummary({ ...running, state: 'cancelled' }), '12 MB of 98 MB');
  assert.equal(pullSummary({ ...running, bytes_total: null, speed: null, eta_s: null }), '12 MB');
  const de = { __: (t: string, ...a: unknown[]) => t.replace('%1 of %2', `${a[0]} von ${a[1]}`).replace('%1 left', `noch ${a[0]}`) };
  assert.equal(pullSummary(running, de), '12 MB von 98 MB · 4.2 MB/s · noch 21 s');
});

test('alias flags: argv tokens to rows and back', () => {
  assert.deepEqual(flagRows(['--top-k', '40', '--no-mmap', '--rope-scale=2']), [
    { flag: '--top-k', value: '40' },
    { flag: '--no-mmap', value: '' },
    { flag: '--rope-scale', value: '2' }
  ]);
  // a negative number is a value, not a flag
  assert.deepEqual(flagRows(['--seed', '-1']), [{ flag: '--seed', value: '-1' }]);
  assert.deepEqual(flagRows(null), []);
  assert.deepEqual(flagArgs([{ flag: ' --top-k ', value: ' 40 ' }, { flag: '', value: 'x' }, { flag: '--no-mmap', value: '' }]), ['--top-k', '40', '--no-mmap']);
  const args = ['--top-k', '40', '--no-mmap'];
  assert.deepEqual(flagArgs(flagRows(args)), args);
});

test('typed form values: empty is unset, numbers parse, the rest stays for the server to judge', () => {
  assert.equal(typedValue('', 'int'), null);
  assert.equal(typedValue('  ', 'float'), null);
  assert.equal(typedValue('2048', 'int'), 2048);
  assert.equal(typedValue('0.7', 'float'), 0.7);
  assert.equal(typedValue('1.5', 'int'), '1.5');
  assert.equal(typedValue('chatml', 'str'), 'chatml');
});
