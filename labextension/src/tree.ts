/**
 * A conversation's messages form a tree: an edit or a regeneration adds a sibling
 * instead of replacing, so no earlier answer is lost. The visible thread follows the
 * chosen child at every fork (the newest by default).
 */

export interface ITreeMessage {
  id: string;
  parent_id: string | null;
  created_at: string;
}

export interface IThreadItem<T extends ITreeMessage> {
  message: T;
  /** 1-based position among its siblings, and how many there are: `< 2/3 >`. */
  index: number;
  count: number;
  siblings: T[];
}

function byCreated<T extends ITreeMessage>(a: T, b: T): number {
  return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;
}

export function childrenOf<T extends ITreeMessage>(
  messages: T[],
  parent: string | null
): T[] {
  return messages.filter(m => (m.parent_id ?? null) === parent).sort(byCreated);
}

/**
 * The thread from the root down, choosing at each fork the child named in `chosen`
 * (parent id, or '' for the roots, mapped to child id), else the newest.
 */
export function thread<T extends ITreeMessage>(
  messages: T[],
  chosen: Record<string, string> = {}
): IThreadItem<T>[] {
  const out: IThreadItem<T>[] = [];
  const seen = new Set<string>();
  let parent: string | null = null;
  for (;;) {
    const siblings: T[] = childrenOf(messages, parent);
    if (!siblings.length) {
      break;
    }
    const want = chosen[parent ?? ''];
    let i = siblings.findIndex(m => m.id === want);
    if (i < 0) {
      i = siblings.length - 1;
    }
    const message: T = siblings[i];
    if (seen.has(message.id)) {
      break; // a cycle cannot come from the server, but never loop forever
    }
    seen.add(message.id);
    out.push({ message, index: i + 1, count: siblings.length, siblings });
    parent = message.id;
  }
  return out;
}

/** `chosen` after stepping the fork above `item` by `step` (-1 or +1). */
export function switchBranch<T extends ITreeMessage>(
  chosen: Record<string, string>,
  item: IThreadItem<T>,
  step: number
): Record<string, string> {
  const i = Math.min(Math.max(item.index - 1 + step, 0), item.count - 1);
  return { ...chosen, [item.message.parent_id ?? '']: item.siblings[i].id };
}

/** `chosen` so that the thread runs through `id` (after a new branch is made). */
export function choose<T extends ITreeMessage>(
  messages: T[],
  chosen: Record<string, string>,
  id: string
): Record<string, string> {
  const byId = new Map(messages.map(m => [m.id, m]));
  const next = { ...chosen };
  let m = byId.get(id);
  while (m) {
    next[m.parent_id ?? ''] = m.id;
    m = m.parent_id ? byId.get(m.parent_id) : undefined;
  }
  return next;
}
