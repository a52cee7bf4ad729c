// The branch tree: newest branch shown by default, switching, and choosing a new branch.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

import { choose, switchBranch, thread } from '../src/tree';

const m = (id: string, parent_id: string | null, t: number) => ({
  id,
  parent_id,
  created_at: new Date(1_700_000_000_000 + t * 1000).toISOString()
});

// q1 -> a1, a2 (regenerated); q1' (an edit of q1) -> b1
const messages = [m('q1', null, 1), m('a1', 'q1', 2), m('a2', 'q1', 3), m('q1e', null, 4), m('b1', 'q1e', 5), m('q2', 'a1', 6)];

test('the newest branch is shown at every fork', () => {
  const t = thread(messages);
  assert.deepEqual(t.map(i => i.message.id), ['q1e', 'b1']);
  assert.deepEqual([t[0].index, t[0].count], [2, 2]);
});

test('switching a fork shows the other branch and its own newest descendants', () => {
  let chosen = switchBranch({}, thread(messages)[0], -1);
  let t = thread(messages, chosen);
  assert.deepEqual(t.map(i => i.message.id), ['q1', 'a2']);
  assert.deepEqual([t[1].index, t[1].count], [2, 2]);
  chosen = switchBranch(chosen, t[1], -1);
  t = thread(messages, chosen);
  assert.deepEqual(t.map(i => i.message.id), ['q1', 'a1', 'q2']);
  // stepping past either end stays at the end
  assert.deepEqual(thread(messages, switchBranch(chosen, t[1], -5)).map(i => i.message.id), ['q1', 'a1', 'q2']);
});

test('choose() makes the thread run through a message deep in an older branch', () => {
  const t = thread(messages, choose(messages, {}, 'q2'));
  assert.deepEqual(t.map(i => i.message.id), ['q1', 'a1', 'q2']);
});

test('an empty conversation has an empty thread', () => {
  assert.deepEqual(thread([]), []);
});
