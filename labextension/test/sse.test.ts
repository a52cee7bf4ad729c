// Stream parsing without a browser: events cut at any byte, UTF-8 split, errors, [DONE].
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { SSEParser, parseChatChunk } from '../src/sse';

const chunk = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ delta: { content }, finish_reason: null }] })}\n\n`;

test('events survive being cut at every byte, multi-byte characters included', () => {
  const stream = chunk('Grüße ') + chunk('🌍\n```py\nx=1\n```') + ': keep-alive\n\n' + 'data: [DONE]\n\n';
  const bytes = new TextEncoder().encode(stream);
  for (let cut = 1; cut < bytes.length; cut += 7) {
    const p = new SSEParser();
    const events = [...p.push(bytes.slice(0, cut)), ...p.push(bytes.slice(cut)), ...p.end()];
    const text = events.map(e => parseChatChunk(e.data)).map(d => d.content).join('');
    assert.equal(text, 'Grüße 🌍\n```py\nx=1\n```');
    assert.equal(parseChatChunk(events[events.length - 1].data).done, true);
  }
});

test('CRLF line endings, multi-line data and event names', () => {
  const p = new SSEParser();
  const events = p.push('event: note\r\ndata: a\r\ndata: b\r\n\r\n');
  assert.deepEqual(events, [{ event: 'note', data: 'a\nb' }]);
});

test('a last event without its blank line is not lost', () => {
  const p = new SSEParser();
  assert.deepEqual(p.push('data: [DONE]'), []);
  assert.equal(parseChatChunk(p.end()[0].data).done, true);
});

test('an error event mid-stream is reported with its message and code', () => {
  const d = parseChatChunk(JSON.stringify({ error: { message: 'engine died', type: 'engine_error', code: 'engine_error' } }));
  assert.equal(d.error?.message, 'engine died');
  assert.equal(d.error?.code, 'engine_error');
});

test('timings, usage and the finish reason come through', () => {
  const d = parseChatChunk(
    JSON.stringify({
      choices: [{ delta: {}, finish_reason: 'stop' }],
      usage: { prompt_tokens: 9, completion_tokens: 3 },
      timings: { predicted_per_second: 81.5, prompt_ms: 12 }
    })
  );
  assert.equal(d.finishReason, 'stop');
  assert.equal(d.usage?.completion_tokens, 3);
  assert.equal(d.timings?.predicted_per_second, 81.5);
  assert.ok(parseChatChunk('{not json').error);
});
