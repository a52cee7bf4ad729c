// Ghost text: what a request says about the notebook, and what of an answer is shown.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { delay, infillFields, notebookChars, suggestion } from '../src/completion/context';

const cells = [
  { type: 'code', source: 'import math' },
  { type: 'markdown', source: 'Adds two numbers' },
  { type: 'code', source: 'def add(a, b):\n    return \n\nadd(1, 2)' },
  { type: 'code', source: '' },
  { type: 'code', source: 'print(add(3, 4))\n' }
];

test('the active cell is split at the cursor, neighbours go in notebook order', () => {
  const text = cells[2].source;
  const offset = text.indexOf('\n\nadd');
  const f = infillFields(text, offset, cells, 2);
  assert.equal(f.input_prefix, 'def add(a, b):\n    return ');
  assert.equal(f.input_suffix, '\n\nadd(1, 2)');
  assert.deepEqual(f.input_extra, [
    { filename: 'cell 1', text: 'import math\n' },
    { filename: 'cell 2', text: '# Adds two numbers\n' },
    { filename: 'cell 5', text: 'print(add(3, 4))\n' }
  ]);
});

test('context is bounded: nearest cells first, the prefix keeps its end', () => {
  const long = [{ type: 'code', source: 'x = 1\n'.repeat(1000) }, ...cells];
  const f = infillFields('y'.repeat(50) + 'END', 53, long, 3, {
    prefixChars: 10,
    suffixChars: 5,
    contextChars: 40
  });
  assert.equal(f.input_prefix, 'yyyyyyyEND');
  const total = f.input_extra.reduce((n, c) => n + c.text.length, 0);
  assert.ok(total <= 40 + f.input_extra.length, `${total}`);
  // nearest first (the empty cell 5 skipped): the markdown, the import, then the start of
  // the print cell fill the budget; the long first cell gets nothing
  assert.deepEqual(
    f.input_extra.map(c => [c.filename, c.text]),
    [
      ['cell 2', 'import math\n'],
      ['cell 3', '# Adds two numbers\n'],
      ['cell 6', 'print(add(3\n']
    ]
  );
  assert.equal(notebookChars(cells), 11 + 16 + cells[2].source.length + 0 + 17);
});

test('a suggestion is the rest of the line or block, never whitespace or the suffix', () => {
  assert.equal(suggestion('a + b\n\n# Example usage:\nadd(1)', ''), 'a + b');
  assert.equal(suggestion('a + b\n    c = 1\n  \nmore', ''), 'a + b\n    c = 1');
  assert.equal(suggestion('  \n\n', ''), '');
  assert.equal(suggestion('add(1, 2)', 'add(1, 2)\n'), '');
  assert.equal(suggestion('x)  ', ')'), 'x)');
});

test('a superseded wait rejects at once with an AbortError', async () => {
  const c = new AbortController();
  const started = Date.now();
  const wait = delay(10_000, c.signal);
  c.abort();
  await assert.rejects(wait, (e: Error) => e.name === 'AbortError');
  assert.ok(Date.now() - started < 1000);
  await delay(1, new AbortController().signal);
});
