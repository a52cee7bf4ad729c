/**
 * Server-sent events from a fetch body: bytes in, `data:` payloads out.
 *
 * Kept free of JupyterLab imports so that it is unit-tested with plain node.
 */

export interface ISSEEvent {
  event: string | null;
  data: string;
}

/** Splits a byte stream into events; handles chunks that cut events, lines or UTF-8. */
export class SSEParser {
  private decoder = new TextDecoder();
  private buffer = '';

  /** Feed one chunk; returns the events it completed. */
  push(chunk: Uint8Array | string): ISSEEvent[] {
    this.buffer +=
      typeof chunk === 'string'
        ? chunk
        : this.decoder.decode(chunk, { stream: true });
    const events: ISSEEvent[] = [];
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.buffer);
      if (!m) {
        break;
      }
      const block = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = parseBlock(block);
      if (ev) {
        events.push(ev);
      }
    }
    return events;
  }

  /** The last event if the stream ended without its blank line. */
  end(): ISSEEvent[] {
    this.buffer += this.decoder.decode();
    const rest = this.buffer.trim();
    this.buffer = '';
    const ev = rest ? parseBlock(rest) : null;
    return ev ? [ev] : [];
  }
}

function parseBlock(block: string): ISSEEvent | null {
  let event: string | null = null;
  const data: string[] = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) {
      continue; // comment / keep-alive
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    if (field === 'data') {
      data.push(value);
    } else if (field === 'event') {
      event = value;
    }
  }
  return data.length ? { event, data: data.join('\n') } : null;
}

/** What one OpenAI chat chunk adds to a reply. */
export interface IChunkDelta {
  content: string;
  finishReason: string | null;
  usage: { prompt_tokens?: number; completion_tokens?: number } | null;
  timings: ITimings | null;
  error: { message: string; type?: string; code?: string | null } | null;
  done: boolean;
}

/** llama-server's per-reply timings (milliseconds and tokens per second). */
export interface ITimings {
  prompt_n?: number;
  prompt_ms?: number;
  predicted_n?: number;
  predicted_ms?: number;
  predicted_per_second?: number;
}

/** Interprets one `data:` payload of a chat completion stream. */
export function parseChatChunk(data: string): IChunkDelta {
  const out: IChunkDelta = {
    content: '',
    finishReason: null,
    usage: null,
    timings: null,
    error: null,
    done: false
  };
  if (data.trim() === '[DONE]') {
    out.done = true;
    return out;
  }
  let json: any;
  try {
    json = JSON.parse(data);
  } catch {
    out.error = { message: `Unreadable event from the server: ${data.slice(0, 200)}` };
    return out;
  }
  if (json && json.error) {
    out.error = {
      message: String(json.error.message ?? json.error),
      type: json.error.type,
      code: json.error.code ?? null
    };
    return out;
  }
  const choice = json?.choices?.[0];
  if (choice) {
    out.content = choice.delta?.content ?? '';
    out.finishReason = choice.finish_reason ?? null;
  }
  out.usage = json?.usage ?? null;
  out.timings = json?.timings ?? null;
  return out;
}
