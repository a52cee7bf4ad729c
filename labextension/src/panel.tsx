/**
 * The chat panel (loaded lazily by index.ts): model picker, conversation, composer,
 * conversation list, per-conversation parameters, and the API tokens view.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Clipboard, Dialog, InputDialog, ReactWidget, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { BodhiClient, IMessage } from './api';
import { ChatController } from './chat';
import { ICodeActions, Markdown } from './markdown';
import { TokensView } from './tokens';

// the panel's styles load with the panel, not at JupyterLab's start
import '../style/base.css';
import { firstLine, logEnd, trimTraceback } from './text';
import { IThreadItem } from './tree';

export interface IPanelOptions {
  app: JupyterFrontEnd;
  rendermime: IRenderMimeRegistry;
  trans: TranslationBundle;
  settings: Promise<ISettingRegistry.ISettings | null>;
  notebooks: INotebookTracker | null;
}

export interface IChatPanel {
  widget: Widget;
  notebooks: INotebookTracker | null;
  controller: ChatController;
  askAboutCell(kind: 'explain' | 'fix'): Promise<void>;
  sendSelection(): Promise<void>;
}

type View = 'chat' | 'list' | 'tokens';

function useController(c: ChatController): number {
  const [, setTick] = React.useState(0);
  React.useEffect(() => c.subscribe(() => setTick(t => t + 1)), [c]);
  return c.version;
}

/** Seconds since `since`, ticking while shown. */
function Elapsed(props: { since: number }): JSX.Element {
  const [now, setNow] = React.useState(performance.now());
  React.useEffect(() => {
    const t = window.setInterval(() => setNow(performance.now()), 250);
    return () => window.clearInterval(t);
  }, []);
  return <>{Math.max(0, Math.floor((now - props.since) / 1000))}</>;
}

export class ChatPanelWidget extends ReactWidget implements IChatPanel {
  readonly controller: ChatController;
  sendWith = 'Enter';
  composer: { set: (text: string) => void } | null = null;

  constructor(private readonly options: IPanelOptions) {
    super();
    this.addClass('bodhi-Panel');
    this.controller = new ChatController(new BodhiClient(), options.trans);
    void options.settings.then(s => {
      if (s) {
        const apply = () => {
          this.sendWith = s.get('sendWith').composite as string;
          this.controller.defaultModel = s.get('defaultModel').composite as string;
          this.update();
        };
        apply();
        s.changed.connect(apply);
      }
      void this.controller.refreshModels();
    });
    void this.controller.refreshList();
  }

  get widget(): Widget {
    return this;
  }

  get notebooks(): INotebookTracker | null {
    return this.options.notebooks;
  }

  async askAboutCell(kind: 'explain' | 'fix'): Promise<void> {
    const trans = this.options.trans;
    const nb = this.options.notebooks?.currentWidget;
    const cell = this.options.notebooks?.activeCell;
    if (!cell) {
      return;
    }
    const lang = (nb?.model?.metadata?.language_info as any)?.name ?? 'python';
    const source = cell.model.sharedModel.getSource();
    let text: string;
    if (kind === 'explain') {
      text = trans.__('Explain this notebook cell:') + `\n\n\`\`\`${lang}\n${source}\n\`\`\``;
    } else {
      const outputs = (cell.model as any).outputs;
      let err: any = null;
      for (let i = 0; outputs && i < outputs.length; i++) {
        const o = outputs.get(i).toJSON();
        if (o.output_type === 'error') {
          err = o;
        }
      }
      const trace = err ? trimTraceback(err.traceback as string[]) : '';
      text =
        trans.__('Fix the error in this cell. Reply with the corrected code.') +
        `\n\n\`\`\`${lang}\n${source}\n\`\`\`\n\n` +
        (err
          ? `${err.ename}: ${err.evalue}\n\n\`\`\`\n${trace}\n\`\`\``
          : trans.__('(The cell shows no error output.)'));
    }
    this.controller.newChat();
    await this.controller.send(text);
  }

  async sendSelection(): Promise<void> {
    const cell = this.options.notebooks?.activeCell;
    if (!cell) {
      return;
    }
    const source = cell.model.sharedModel.getSource();
    const editor = cell.editor;
    let text = source;
    if (editor) {
      const sel = editor.getSelection();
      const a = editor.getOffsetAt(sel.start);
      const b = editor.getOffsetAt(sel.end);
      if (a !== b) {
        text = source.slice(Math.min(a, b), Math.max(a, b));
      }
    }
    this.composer?.set('```\n' + text + '\n```\n');
  }

  codeActions(): ICodeActions {
    const trans = this.options.trans;
    const tracker = this.options.notebooks;
    const labels = {
      copy: trans.__('Copy'),
      insert: trans.__('Insert below'),
      replace: trans.__('Replace cell')
    };
    return {
      labels,
      copy: code => Clipboard.copyToSystem(code),
      insert: code => {
        const nb = tracker?.currentWidget?.content;
        if (nb) {
          NotebookActions.insertBelow(nb);
          nb.activeCell?.model.sharedModel.setSource(code.replace(/\n$/, ''));
        }
      },
      replace: code => {
        tracker?.activeCell?.model.sharedModel.setSource(code.replace(/\n$/, ''));
      }
    };
  }

  render(): JSX.Element {
    return (
      <ChatApp
        panel={this}
        controller={this.controller}
        rendermime={this.options.rendermime}
        trans={this.options.trans}
      />
    );
  }
}

export function createChatPanel(options: IPanelOptions): IChatPanel {
  return new ChatPanelWidget(options);
}

// -- views -----------------------------------------------------------------------------
interface IViewProps {
  panel: ChatPanelWidget;
  controller: ChatController;
  rendermime: IRenderMimeRegistry;
  trans: TranslationBundle;
}

function ChatApp(props: IViewProps): JSX.Element {
  const { controller: c, trans } = props;
  useController(c);
  const [view, setView] = React.useState<View>('chat');
  const [showParams, setShowParams] = React.useState(false);
  const tab = (v: View, label: string) => (
    <button
      className={`bodhi-Tab ${view === v ? 'bodhi-mod-active' : ''}`}
      onClick={() => {
        setView(v);
        if (v === 'list') {
          void c.refreshList();
        }
      }}
      aria-pressed={view === v}
    >
      {label}
    </button>
  );
  return (
    <div className="bodhi-App">
      <div className="bodhi-Tabs" role="toolbar">
        {tab('chat', trans.__('Chat'))}
        {tab('list', trans.__('History'))}
        {tab('tokens', trans.__('API tokens'))}
      </div>
      {c.reconnecting && (
        <div className="bodhi-Banner bodhi-mod-warn" role="status">
          {trans.__('The server is gone; reconnecting…')}
        </div>
      )}
      {view === 'chat' && (
        <>
          <ModelBar {...props} onParams={() => setShowParams(!showParams)} />
          {showParams && <ParamsForm {...props} onClose={() => setShowParams(false)} />}
          <Conversation {...props} />
          <Composer {...props} />
        </>
      )}
      {view === 'list' && <ConversationList {...props} onOpen={() => setView('chat')} />}
      {view === 'tokens' && (
        <TokensView api={c.api} trans={trans} models={c.models.map(m => m.id)} user={c.user} />
      )}
    </div>
  );
}

function stateLabel(state: string, trans: TranslationBundle): string {
  return state === 'ready' ? trans.__('ready') : state === 'loading' ? trans.__('loading') : trans.__('not loaded');
}

function ModelBar(props: IViewProps & { onParams: () => void }): JSX.Element {
  const { controller: c, trans } = props;
  return (
    <div className="bodhi-ModelBar">
      <select
        className="bodhi-ModelPicker jp-mod-styled"
        aria-label={trans.__('Model')}
        value={c.model}
        disabled={!!c.busy}
        onChange={e => c.setModel(e.target.value)}
        onFocus={() => void c.refreshModels()}
      >
        {c.models.length === 0 && <option value="">{trans.__('No model available')}</option>}
        {c.models.map(m => (
          <option key={m.id} value={m.id}>
            {`${m.id} · ${m.source} · ${stateLabel(c.modelState(m.id), trans)}`}
          </option>
        ))}
      </select>
      <ModelInfo {...props} />
      <button className="bodhi-Button" title={trans.__('Parameters')} onClick={props.onParams}>
        {trans.__('Params')}
      </button>
      <button className="bodhi-Button" title={trans.__('New chat')} disabled={!!c.busy} onClick={() => c.newChat()}>
        {trans.__('New')}
      </button>
    </div>
  );
}

function ModelInfo(props: IViewProps): JSX.Element | null {
  const { controller: c, trans } = props;
  const m = c.models.find(x => x.id === c.model);
  if (!m) {
    return null;
  }
  const state = c.modelState(m.id);
  return (
    <span className={`bodhi-ModelInfo bodhi-mod-${state.replace(' ', '-')}`} title={m.id}>
      {`${m.source} · ${stateLabel(state, trans)}`}
    </span>
  );
}

const PARAM_FIELDS: { key: string; label: string; kind: 'text' | 'number' | 'int' | 'list' }[] = [
  { key: 'system_prompt', label: 'System prompt', kind: 'text' },
  { key: 'temperature', label: 'Temperature', kind: 'number' },
  { key: 'top_p', label: 'Top p', kind: 'number' },
  { key: 'max_tokens', label: 'Max tokens', kind: 'int' },
  { key: 'seed', label: 'Seed', kind: 'int' },
  { key: 'stop', label: 'Stop (one per line)', kind: 'list' }
];

function ParamsForm(props: IViewProps & { onClose: () => void }): JSX.Element {
  const { controller: c, trans } = props;
  const defaults = c.models.find(m => m.id === c.model)?.request_defaults ?? {};
  const show = (v: any) => (v === undefined || v === null ? '' : Array.isArray(v) ? v.join('\n') : String(v));
  const [values, setValues] = React.useState<Record<string, string>>(
    Object.fromEntries(PARAM_FIELDS.map(f => [f.key, show(c.params[f.key])]))
  );
  const save = () => {
    const out: Record<string, any> = {};
    for (const f of PARAM_FIELDS) {
      const raw = values[f.key].trim();
      if (!raw) {
        continue;
      }
      out[f.key] =
        f.kind === 'number' ? Number(raw) : f.kind === 'int' ? parseInt(raw, 10) : f.kind === 'list' ? raw.split('\n').filter(Boolean) : values[f.key];
    }
    void c.setParams(out).then(props.onClose);
  };
  return (
    <div className="bodhi-Params">
      <div className="bodhi-Row bodhi-ParamsHead">
        <strong>{trans.__('Parameters of this conversation')}</strong>
        <button className="bodhi-Button bodhi-mod-accept" onClick={save}>
          {trans.__('Save')}
        </button>
        <button className="bodhi-Button" onClick={props.onClose}>
          {trans.__('Cancel')}
        </button>
      </div>
      {PARAM_FIELDS.map(f => {
        const placeholder = defaults[f.key] !== undefined ? trans.__('default: %1', show(defaults[f.key])) : trans.__('model default');
        const common = {
          id: `bodhi-param-${f.key}`,
          value: values[f.key],
          placeholder,
          onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => setValues({ ...values, [f.key]: e.target.value })
        };
        return (
          <label key={f.key} className="bodhi-Param">
            <span>{trans.__(f.label)}</span>
            {f.kind === 'text' || f.kind === 'list' ? <textarea rows={2} {...common} /> : <input type="number" step={f.kind === 'number' ? '0.05' : '1'} {...common} />}
          </label>
        );
      })}
    </div>
  );
}

function Conversation(props: IViewProps): JSX.Element {
  const { controller: c, trans, panel } = props;
  const items = c.thread;
  const end = React.useRef<HTMLDivElement>(null);
  const codeActions = React.useMemo(() => panel.codeActions(), [panel]);
  React.useEffect(() => {
    end.current?.scrollIntoView({ block: 'end' });
  }, [items.length, c.busy?.phase]);
  const busy = c.busy;
  return (
    <div className="bodhi-Messages" aria-live="polite">
      {c.conversation && <div className="bodhi-Title">{c.conversation.title}</div>}
      {!items.length && !busy && (
        <div className="bodhi-Empty">{trans.__('Ask the local model anything. Replies stream here as Markdown.')}</div>
      )}
      {items.map(item => (
        <MessageView
          key={item.message.id}
          {...props}
          item={item}
          streaming={busy?.messageId === item.message.id}
          codeActions={codeActions}
        />
      ))}
      {busy && busy.phase !== 'generating' && (
        <div className="bodhi-Status" role="status">
          {busy.phase === 'loading' ? (
            <>
              {trans.__('Loading model %1…', busy.model)} <Elapsed since={busy.started} /> {trans.__('s')}
            </>
          ) : (
            <>
              {trans.__('Processing the prompt…')} <Elapsed since={busy.started} /> {trans.__('s')}
            </>
          )}
        </div>
      )}
      {c.error && (
        <div className="bodhi-Error" role="alert">
          <strong>{c.error.title}</strong>
          <pre>{logEnd(c.error.detail)}</pre>
        </div>
      )}
      <div ref={end} />
    </div>
  );
}

function MessageView(
  props: IViewProps & { item: IThreadItem<IMessage>; streaming: boolean; codeActions: ICodeActions }
): JSX.Element {
  const { controller: c, trans, rendermime, item, streaming } = props;
  const m = item.message;
  const [editing, setEditing] = React.useState(false);
  const [draft, setDraft] = React.useState(m.content);
  const s = m.stats ?? {};
  const stats: string[] = [];
  if (s.prompt_tokens !== undefined) {
    stats.push(trans.__('%1 prompt', s.prompt_tokens));
  }
  if (s.completion_tokens !== undefined) {
    stats.push(trans.__('%1 completion tokens', s.completion_tokens));
  }
  if (s.tokens_per_second) {
    stats.push(trans.__('%1 tok/s', Number(s.tokens_per_second).toFixed(1)));
  }
  if (s.ttft_ms !== undefined) {
    stats.push(trans.__('first token %1 s', (s.ttft_ms / 1000).toFixed(2)));
  }
  return (
    <div className={`bodhi-Message bodhi-mod-${m.role}`} data-message-id={m.id} data-status={streaming ? 'streaming' : m.status}>
      <div className="bodhi-MessageHead">
        <span className="bodhi-Role">{m.role === 'user' ? trans.__('You') : m.model ?? trans.__('Assistant')}</span>
        {item.count > 1 && (
          <span className="bodhi-Branches">
            <button className="bodhi-IconButton bodhi-BranchPrev" title={trans.__('Previous version')} disabled={item.index <= 1 || !!c.busy} onClick={() => c.switchBranch(item, -1)}>
              {'<'}
            </button>
            <span className="bodhi-BranchLabel">{`${item.index}/${item.count}`}</span>
            <button className="bodhi-IconButton bodhi-BranchNext" title={trans.__('Next version')} disabled={item.index >= item.count || !!c.busy} onClick={() => c.switchBranch(item, 1)}>
              {'>'}
            </button>
          </span>
        )}
      </div>
      {editing ? (
        <div className="bodhi-Edit">
          <textarea value={draft} rows={3} onChange={e => setDraft(e.target.value)} />
          <div className="bodhi-Row">
            <button
              className="bodhi-Button bodhi-mod-accept"
              onClick={() => {
                setEditing(false);
                void c.send(draft, m);
              }}
            >
              {trans.__('Send')}
            </button>
            <button className="bodhi-Button" onClick={() => setEditing(false)}>
              {trans.__('Cancel')}
            </button>
          </div>
        </div>
      ) : streaming && c.busy ? (
        <Markdown rendermime={rendermime} source={c.busy.source} />
      ) : (
        <Markdown rendermime={rendermime} text={m.content} codeActions={m.role === 'assistant' ? props.codeActions : undefined} />
      )}
      {!streaming && m.status === 'cut_off' && (
        <div className="bodhi-CutOff">{trans.__('Cut off: %1', firstLine(s.error) ?? trans.__('the reply did not finish'))}</div>
      )}
      {!streaming && !editing && (
        <div className="bodhi-MessageFoot">
          {stats.length > 0 && <span className="bodhi-Stats">{stats.join(' · ')}</span>}
          <button className="bodhi-IconButton bodhi-Copy" title={trans.__('Copy')} onClick={() => Clipboard.copyToSystem(m.content)}>
            {trans.__('Copy')}
          </button>
          {m.role === 'assistant' && (
            <button className="bodhi-IconButton bodhi-Regenerate" disabled={!!c.busy} title={trans.__('Regenerate')} onClick={() => void c.regenerate(m)}>
              {trans.__('Regenerate')}
            </button>
          )}
          {m.role === 'user' && (
            <button
              className="bodhi-IconButton bodhi-EditButton"
              disabled={!!c.busy}
              title={trans.__('Edit and resend')}
              onClick={() => {
                setDraft(m.content);
                setEditing(true);
              }}
            >
              {trans.__('Edit')}
            </button>
          )}
        </div>
      )}
    </div>
  );
}

function Composer(props: IViewProps): JSX.Element {
  const { controller: c, trans, panel } = props;
  const [text, setText] = React.useState('');
  const area = React.useRef<HTMLTextAreaElement>(null);
  React.useEffect(() => {
    panel.composer = {
      set: t => {
        setText(t);
        area.current?.focus();
      }
    };
    return () => {
      panel.composer = null;
    };
  }, [panel]);
  const send = () => {
    const t = text;
    if (!t.trim() || c.busy) {
      return;
    }
    setText('');
    void c.send(t);
  };
  const onKey = (e: React.KeyboardEvent) => {
    if (e.key !== 'Enter') {
      return;
    }
    const wantShift = panel.sendWith === 'Shift Enter';
    if (e.shiftKey === wantShift && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      send();
    }
  };
  return (
    <div className="bodhi-Composer">
      <textarea
        ref={area}
        className="bodhi-Input"
        rows={3}
        value={text}
        placeholder={panel.sendWith === 'Enter' ? trans.__('Message (Enter to send, Shift+Enter for a new line)') : trans.__('Message (Shift+Enter to send)')}
        onChange={e => setText(e.target.value)}
        onKeyDown={onKey}
        aria-label={trans.__('Message')}
      />
      {c.busy ? (
        <button className="bodhi-Button bodhi-Stop bodhi-mod-warn" onClick={() => c.stop()}>
          {trans.__('Stop')}
        </button>
      ) : (
        <button className="bodhi-Button bodhi-Send bodhi-mod-accept" onClick={send} disabled={!text.trim()}>
          {trans.__('Send')}
        </button>
      )}
    </div>
  );
}

function ConversationList(props: IViewProps & { onOpen: () => void }): JSX.Element {
  const { controller: c, trans } = props;
  const [q, setQ] = React.useState(c.query);
  React.useEffect(() => {
    const t = window.setTimeout(() => void c.refreshList(q), 200);
    return () => window.clearTimeout(t);
  }, [q]);
  const exportAs = (id: string, fmt: string) => {
    window.open(c.api.url(`app/conversations/${id}/export?format=${fmt}`), '_blank');
  };
  return (
    <div className="bodhi-List">
      <input className="bodhi-Search jp-mod-styled" type="search" placeholder={trans.__('Search titles and messages')} value={q} onChange={e => setQ(e.target.value)} />
      {c.list.length === 0 && <div className="bodhi-Empty">{trans.__('No conversations yet.')}</div>}
      {c.list.map(item => (
        <div key={item.id} className="bodhi-ListItem" data-conversation-id={item.id}>
          <button
            className="bodhi-ListTitle"
            onClick={() => {
              void c.open(item.id).then(props.onOpen);
            }}
          >
            {item.title}
          </button>
          <span className="bodhi-ListMeta">{new Date(item.updated_at).toLocaleString()}</span>
          <span className="bodhi-ListActions">
            <button
              className="bodhi-IconButton"
              onClick={async () => {
                const r = await InputDialog.getText({ title: trans.__('Rename conversation'), text: item.title });
                if (r.button.accept && r.value && r.value.trim()) {
                  await c.rename(item.id, r.value.trim());
                }
              }}
            >
              {trans.__('Rename')}
            </button>
            <button className="bodhi-IconButton" onClick={() => exportAs(item.id, 'markdown')}>
              {trans.__('Markdown')}
            </button>
            <button className="bodhi-IconButton" onClick={() => exportAs(item.id, 'json')}>
              {trans.__('JSON')}
            </button>
            <button
              className="bodhi-IconButton bodhi-mod-danger"
              onClick={async () => {
                const r = await showDialog({
                  title: trans.__('Delete conversation'),
                  body: trans.__('Delete "%1"? This cannot be undone.', item.title),
                  buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: trans.__('Delete') })]
                });
                if (r.button.accept) {
                  await c.remove(item.id);
                }
              }}
            >
              {trans.__('Delete')}
            </button>
          </span>
        </div>
      ))}
      {c.listTotal > c.list.length && <div className="bodhi-ListMeta">{trans.__('%1 of %2 shown; search to narrow.', c.list.length, c.listTotal)}</div>}
    </div>
  );
}
