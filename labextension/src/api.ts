/**
 * Talking to the server: every request goes through `ServerConnection.makeRequest`, which
 * adds Jupyter's auth and XSRF. Errors come back in OpenAI's shape and are turned into
 * `ApiError`s that say what happened.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { SSEParser, parseChatChunk, IChunkDelta } from './sse';


export interface IModelInfo {
  id: string;
  source: string;
  request_defaults: Record<string, any>;
  capabilities?: string[] | null;
}

export interface IProcessInfo {
  id: string;
  model: string;
  state: string;
  embedding: boolean;
  in_flight: number;
}

export interface IMessage {
  id: string;
  conversation_id: string;
  parent_id: string | null;
  role: 'user' | 'assistant' | 'system';
  content: string;
  model: string | null;
  status: 'complete' | 'streaming' | 'cut_off';
  stats: Record<string, any> | null;
  created_at: string;
  updated_at: string;
}

export interface IConversationSummary {
  id: string;
  title: string;
  model: string | null;
  params: Record<string, any>;
  created_at: string;
  updated_at: string;
  message_count: number;
}

export interface IConversation extends IConversationSummary {
  messages: IMessage[];
}

export interface IPage<T> {
  data: T[];
  total: number;
  page: number;
  page_size: number;
}

export interface IToken {
  id: string;
  name: string;
  prefix: string;
  scope: string;
  models: string[] | null;
  status: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  /** a notebook kernel's own credential: the server hands it over and deletes it */
  kernel?: boolean;
  notebook?: string | null;
  token?: string;
}

export interface IUser {
  name: string;
  role: string;
  scope: string;
}

/** A failed request: the server's error, or the network (status 0: server gone). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null = null,
    readonly type: string | null = null,
    readonly retryAfter: number | null = null,
    /** the request field the server blames (a form marks it) */
    readonly param: string | null = null
  ) {
    super(message);
  }

  get serverGone(): boolean {
    return this.status === 0;
  }
}

function isAbort(e: unknown): boolean {
  return (e as any)?.name === 'AbortError';
}

export class BodhiClient {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  url(path: string): string {
    return URLExt.join(this.settings.baseUrl, 'bodhi', path);
  }

  /** This server's OpenAI base URL, as a client elsewhere would type it. */
  get openaiBaseUrl(): string {
    return new URL(this.url('v1'), window.location.href).href;
  }

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    let resp: Response;
    try {
      resp = await ServerConnection.makeRequest(this.url(path), init, this.settings);
    } catch (e) {
      if (isAbort(e) || isAbort((e as any)?.cause)) {
        throw e;
      }
      throw new ApiError(String((e as any)?.message ?? e), 0, 'server_gone');
    }
    if (!resp.ok) {
      throw await errorOf(resp);
    }
    return resp;
  }

  /** Save what `path` answers as a file (its Content-Disposition names it); through
   * makeRequest, so it carries Jupyter's auth like every other call. */
  async download(path: string, fallbackName: string): Promise<string> {
    const resp = await this.fetch(path);
    const disposition = resp.headers.get('Content-Disposition') ?? '';
    const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? fallbackName;
    const href = URL.createObjectURL(await resp.blob());
    const a = document.createElement('a');
    a.href = href;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    window.setTimeout(() => URL.revokeObjectURL(href), 10_000);
    return name;
  }

  async json<T>(path: string, method = 'GET', body?: unknown): Promise<T> {
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    const resp = await this.fetch(path, init);
    return resp.status === 204 ? (undefined as T) : ((await resp.json()) as T);
  }

  models(): Promise<IPage<IModelInfo>> {
    return this.json('app/models?page_size=200');
  }

  processes(): Promise<IPage<IProcessInfo>> {
    return this.json('app/processes?page_size=200');
  }

  user(): Promise<IUser> {
    return this.json('app/user');
  }

  conversations(q = '', page = 1): Promise<IPage<IConversationSummary>> {
    const query = new URLSearchParams({ page: String(page), page_size: '30' });
    if (q) {
      query.set('q', q);
    }
    return this.json(`app/conversations?${query}`);
  }

  conversation(id: string): Promise<IConversation> {
    return this.json(`app/conversations/${encodeURIComponent(id)}`);
  }

  /**
   * Stream a chat completion: `onDelta` gets each chunk's meaning as it arrives. Resolves
   * when the stream ends; rejects with ApiError (or an AbortError after Stop).
   */
  async streamChat(
    body: Record<string, unknown>,
    signal: AbortSignal,
    onDelta: (d: IChunkDelta) => void,
    onHeaders?: () => void
  ): Promise<void> {
    const resp = await this.fetch('v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ ...body, stream: true }),
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      signal
    });
    onHeaders?.();
    if (!resp.body) {
      throw new ApiError('The server sent no stream', 502);
    }
    const reader = resp.body.getReader();
    const parser = new SSEParser();
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (isAbort(e) || signal.aborted) {
            throw e;
          }
          throw new ApiError('The connection to the server broke', 0, 'server_gone');
        }
        const events = chunk.done ? parser.end() : parser.push(chunk.value);
        for (const ev of events) {
          const d = parseChatChunk(ev.data);
          if (d.error) {
            throw new ApiError(d.error.message, 502, d.error.code ?? null, d.error.type);
          }
          onDelta(d);
          if (d.done) {
            return;
          }
        }
        if (chunk.done) {
          return;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }
}

async function errorOf(resp: Response): Promise<ApiError> {
  const retry = Number(resp.headers.get('Retry-After'));
  let message = `${resp.status} ${resp.statusText}`;
  let code: string | null = null;
  let type: string | null = null;
  let param: string | null = null;
  try {
    const body = await resp.json();
    if (body?.error) {
      message = body.error.message ?? message;
      code = body.error.code ?? null;
      type = body.error.type ?? null;
      param = body.error.param ?? null;
    } else if (body?.message) {
      message = body.message;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(message, resp.status, code, type, retry > 0 ? retry : null, param);
}

export { describeError } from './text';
