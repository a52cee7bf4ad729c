/**
 * Small text helpers with no JupyterLab imports (unit-tested with node): what the panel
 * sends about a failing cell, how it shows an engine's log, which scopes a person may
 * give a token, and the snippet shown with a new token.
 */

const ANSI = new RegExp(String.fromCharCode(27) + '\\[[0-9;]*m', 'g');

/** A traceback a small model can read: no colour codes, no rulers, the last lines only. */
export function trimTraceback(lines: string[], keep = 20, maxChars = 3000): string {
  return lines
    .join('\n')
    .replace(ANSI, '')
    .split('\n')
    .filter(l => !/^-{10,}\s*$/.test(l))
    .slice(-keep)
    .join('\n')
    .slice(-maxChars);
}

/** The first line of a message and the end of the log that follows it. */
export function logEnd(text: string, lines = 12): string {
  const all = text.split('\n');
  return all.length <= lines + 1 ? text : [all[0], '…', ...all.slice(-lines)].join('\n');
}

export function firstLine(text: string | undefined): string | undefined {
  return text ? text.split('\n')[0].slice(0, 200) : undefined;
}

const SCOPES = ['read', 'write', 'admin'];

/** The scopes a person may give a token: theirs and those below it. */
export function grantableScopes(userScope: string | undefined): string[] {
  const i = SCOPES.indexOf(userScope ?? 'read');
  return SCOPES.slice(0, Math.max(i, 0) + 1);
}

/** Ready to paste into Python: this server's OpenAI URL and the new token. */
export function snippet(baseUrl: string, token: string): string {
  return `from openai import OpenAI\n\nclient = OpenAI(base_url="${baseUrl}", api_key="${token}")`;
}

/** The parts of a failed request that decide what the person reads. */
export interface IErrorLike {
  status: number;
  code: string | null;
  message: string;
  retryAfter: number | null;
}

type Trans = { __: (s: string, ...a: any[]) => string };

/** What the person should read for an error, by what it means for them. */
export function describeError(e: IErrorLike, trans: Trans): { title: string; detail: string } {
  if (e.status === 0) {
    return { title: trans.__('The server is gone'), detail: trans.__('Reconnecting… (%1)', e.message) };
  }
  if (e.status === 404 && e.code === 'model_not_found') {
    return { title: trans.__('No such model'), detail: e.message };
  }
  if (e.status === 429) {
    return {
      title: trans.__('Rate limited'),
      detail: e.retryAfter ? trans.__('Try again in %1 s. %2', e.retryAfter, e.message) : e.message
    };
  }
  if (e.status === 503) {
    return {
      title: trans.__('All engines are busy'),
      detail: e.retryAfter
        ? trans.__('Capacity reached; try again in %1 s. %2', e.retryAfter, e.message)
        : e.message
    };
  }
  if (e.status === 502 && e.code?.startsWith('upstream')) {
    return { title: trans.__('The upstream failed'), detail: e.message };
  }
  if (e.status === 502) {
    return { title: trans.__('The engine failed'), detail: e.message };
  }
  if (e.status === 401 || e.status === 403) {
    return { title: trans.__('Not allowed'), detail: e.message };
  }
  return { title: trans.__('Request failed (%1)', e.status), detail: e.message };
}

/**
 * Which model regenerates a reply: the one the person picked since opening the
 * conversation, else the one that wrote the reply (so "try again" means the same model),
 * else the picker's; a model no longer offered is skipped.
 */
export function regenerateModel(
  replyModel: string | null | undefined,
  pickedByPerson: string | null,
  shown: string,
  available: string[]
): string {
  for (const m of [pickedByPerson, replyModel]) {
    if (m && available.includes(m)) {
      return m;
    }
  }
  return shown;
}

/** A date and time as short as the sidebar needs (the person's locale). */
export function shortDate(iso: string): string {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'short' });
}

/** Whether the chat may offer a model: one that can chat, or whose capabilities are unknown
 * (remote models and routers; their server decides). Embedding-only models cannot chat. */
export function canChat(model: { capabilities?: string[] | null }): boolean {
  return !model.capabilities || model.capabilities.includes('chat');
}
