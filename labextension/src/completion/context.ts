/**
 * What a ghost-text request says about the notebook: the active cell split at the cursor,
 * and a few neighbouring cells as context chunks. Pure functions (no JupyterLab), so the
 * node tests drive them directly.
 */

/** One chunk of context, as llama-server's /infill takes it. */
export interface IExtraChunk {
  filename: string;
  text: string;
}

export interface IInfillFields {
  input_prefix: string;
  input_suffix: string;
  input_extra: IExtraChunk[];
}

export interface ICellSource {
  /** 'code', 'markdown' or 'raw' */
  type: string;
  source: string;
}

export interface IContextLimits {
  /** characters of the cell before the cursor that are sent (its end) */
  prefixChars: number;
  /** characters of the cell after the cursor that are sent (its start) */
  suffixChars: number;
  /** characters of neighbouring cells, all chunks together */
  contextChars: number;
}

export const DEFAULT_LIMITS: IContextLimits = {
  prefixChars: 4000,
  suffixChars: 1000,
  contextChars: 2000
};

/** Total characters of a notebook's cells: what the size limit compares. */
export function notebookChars(cells: readonly ICellSource[]): number {
  return cells.reduce((n, c) => n + c.source.length, 0);
}

/**
 * The infill fields for the cell `active` with the cursor at `offset` in `text` (the
 * editor's own text, which may be ahead of the cell model). Neighbouring cells go nearest
 * first, alternating before and after, until the budget is spent; llama-server puts the
 * chunks in front of the prefix in the order given, so they are sent in notebook order.
 */
export function infillFields(
  text: string,
  offset: number,
  cells: readonly ICellSource[],
  active: number,
  limits: IContextLimits = DEFAULT_LIMITS
): IInfillFields {
  const prefix = text.slice(0, offset);
  const suffix = text.slice(offset);
  const picked: { index: number; text: string }[] = [];
  let budget = limits.contextChars;
  for (let d = 1; budget > 0 && (active - d >= 0 || active + d < cells.length); d++) {
    for (const index of [active - d, active + d]) {
      const cell = cells[index];
      if (!cell || budget <= 0 || !cell.source.trim()) {
        continue;
      }
      // code as it is; prose as comments, so a code model reads it as such
      const source =
        cell.type === 'code' ? cell.source : cell.source.replace(/^/gm, '# ');
      const cut = index < active ? source.slice(-budget) : source.slice(0, budget);
      budget -= cut.length;
      picked.push({ index, text: cut.endsWith('\n') ? cut : cut + '\n' });
    }
  }
  picked.sort((a, b) => a.index - b.index);
  return {
    input_prefix: prefix.slice(-limits.prefixChars),
    input_suffix: suffix.slice(0, limits.suffixChars),
    input_extra: picked.map(p => ({ filename: `cell ${p.index + 1}`, text: p.text }))
  };
}

/**
 * The part of a model's answer worth showing: up to the first blank line (the rest of the
 * line or block), without trailing spaces; nothing when only whitespace is left, or when
 * the answer just repeats what follows the cursor.
 */
export function suggestion(content: string, suffix: string): string {
  let text = content.replace(/\r\n/g, '\n');
  const blank = text.search(/\n[ \t]*\n/);
  if (blank >= 0) {
    text = text.slice(0, blank);
  }
  text = text.replace(/\s+$/, '');
  if (!text.trim()) {
    return '';
  }
  const rest = suffix.split('\n')[0].trim();
  if (rest && text.trim() === rest) {
    return '';
  }
  return text;
}

/** Wait `ms`, or reject with an AbortError as soon as `signal` aborts. */
export function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const abort = () => {
      clearTimeout(timer);
      reject(new DOMException('superseded', 'AbortError'));
    };
    if (signal.aborted) {
      abort();
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', abort);
      resolve();
    }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
}
