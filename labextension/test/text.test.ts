// Cell errors, engine logs, token scopes and the token snippet.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { canChat, describeError, firstLine, grantableScopes, logEnd, regenerateModel, snippet, trimTraceback } from '../src/text';

const ESC = String.fromCharCode(27);

test('a traceback loses colour codes and rulers and keeps its end', () => {
  const tb = [
    `${ESC}[0;31m---------------------------------------------------------------------------${ESC}[0m`,
    `${ESC}[0;31mIndexError${ESC}[0m                                Traceback (most recent call last)`,
    ...Array.from({ length: 40 }, (_, i) => `frame ${i}`),
    `${ESC}[0;31mIndexError${ESC}[0m: list index out of range`
  ];
  const out = trimTraceback(tb);
  assert.ok(!out.includes(ESC) && !out.includes('-----'));
  assert.ok(out.endsWith('IndexError: list index out of range'));
  assert.equal(out.split('\n').length, 20);
  assert.ok(trimTraceback(['x'.repeat(5000)]).length <= 3000);
});

test('an engine log shows its summary and its last lines', () => {
  const log = ['llama-server exited with code 1', ...Array.from({ length: 50 }, (_, i) => `line ${i}`)].join('\n');
  const shown = logEnd(log).split('\n');
  assert.equal(shown[0], 'llama-server exited with code 1');
  assert.equal(shown[shown.length - 1], 'line 49');
  assert.equal(shown.length, 14);
  assert.equal(logEnd('short\nlog'), 'short\nlog');
  assert.equal(firstLine('a\nb'), 'a');
});

test('a token never gets more than the person holds', () => {
  assert.deepEqual(grantableScopes('write'), ['read', 'write']);
  assert.deepEqual(grantableScopes('admin'), ['read', 'write', 'admin']);
  assert.deepEqual(grantableScopes('read'), ['read']);
  assert.deepEqual(grantableScopes(undefined), ['read']);
});

test('the snippet uses the real URL and the token', () => {
  const s = snippet('http://host:8888/user/a/bodhi/v1', 'bodhi_x');
  assert.ok(s.includes('OpenAI(base_url="http://host:8888/user/a/bodhi/v1", api_key="bodhi_x")'));
});

test('errors read by what they mean, with when to retry', () => {
  const trans = { __: (s: string, ...a: unknown[]) => a.reduce((t: string, v, i) => t.replace(`%${i + 1}`, String(v)), s) };
  const e = (status: number, code: string | null = null, retryAfter: number | null = null) => ({
    status,
    code,
    retryAfter,
    message: 'msg'
  });
  assert.equal(describeError(e(429, 'rate_limit_exceeded', 12), trans).detail, 'Try again in 12 s. msg');
  assert.equal(describeError(e(503, 'capacity_exceeded', 5), trans).title, 'All engines are busy');
  assert.ok(describeError(e(503, 'capacity_exceeded', 5), trans).detail.includes('5 s'));
  assert.equal(describeError(e(502, 'engine_error'), trans).title, 'The engine failed');
  assert.equal(describeError(e(502, 'upstream_unreachable'), trans).title, 'The upstream failed');
  assert.equal(describeError(e(0, 'server_gone'), trans).title, 'The server is gone');
  assert.equal(describeError(e(404, 'model_not_found'), trans).title, 'No such model');
  assert.equal(describeError(e(403, 'insufficient_scope'), trans).title, 'Not allowed');
  assert.equal(describeError(e(418), trans).title, 'Request failed (418)');
});

test('regenerate keeps the model that wrote the reply unless the person picked another', () => {
  const all = ['a', 'b'];
  assert.equal(regenerateModel('a', null, 'b', all), 'a');
  assert.equal(regenerateModel('a', 'b', 'b', all), 'b');
  assert.equal(regenerateModel('gone', null, 'b', all), 'b');
  assert.equal(regenerateModel(null, null, 'a', all), 'a');
  assert.equal(regenerateModel('a', 'gone', 'b', all), 'a');
});

test('the chat offers models that chat, or whose capabilities are unknown', () => {
  assert.equal(canChat({ capabilities: ['chat', 'completion'] }), true);
  assert.equal(canChat({ capabilities: ['embedding'] }), false);
  assert.equal(canChat({ capabilities: null }), true);
  assert.equal(canChat({}), true);
});
