/**
 * Ghost text in notebook code cells from a local model: an inline completion provider
 * that asks `bodhi/v1/infill` for the text at the cursor. Each request supersedes the one
 * before (typing on aborts the wait and the HTTP request alike), waits out a debounce
 * first, and gives up quietly for large notebooks, other cells and other widgets.
 */
import type {
  CompletionHandler,
  IInlineCompletionContext,
  IInlineCompletionItem,
  IInlineCompletionList,
  IInlineCompletionProvider
} from '@jupyterlab/completer';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';

import { ApiError, BodhiClient } from '../api';
import { DEFAULT_LIMITS, ICellSource, delay, infillFields, notebookChars, suggestion } from './context';
import { ICompletionSettings } from './settings';

export const PROVIDER_ID = 'bodhi-jupyter:inline-completion';

/** InlineCompletionTriggerKind.Invoke (Alt \): no debounce for an explicit ask */
const INVOKE = 0;

export interface IInfillReply {
  content: string;
  mode: 'infill' | 'completion';
}

const NOTHING: IInlineCompletionList = { items: [] };

export class BodhiInlineProvider implements IInlineCompletionProvider {
  readonly identifier = PROVIDER_ID;
  readonly name: string;
  /** JupyterLab's per-provider settings: enabled unless switched off there, and time
   * enough for a model's first load */
  readonly schema = {
    properties: {},
    default: { enabled: true, debouncerDelay: 0, timeout: 20000 }
  };

  constructor(
    private readonly settings: () => ICompletionSettings,
    trans: TranslationBundle,
    private readonly client = new BodhiClient()
  ) {
    this.name = trans.__('Local model (bodhi)');
  }

  /** The mode of the last answer ("infill" or "completion"), for tests and curiosity. */
  lastMode: string | null = null;

  async fetch(
    request: CompletionHandler.IRequest,
    context: IInlineCompletionContext
  ): Promise<IInlineCompletionList<IInlineCompletionItem>> {
    this._controller?.abort();
    const controller = new AbortController();
    this._controller = controller;
    const s = this.settings();
    const panel = context.widget as NotebookPanel;
    const notebook = panel.hasClass?.('jp-NotebookPanel') ? panel.content : null;
    const cell = notebook?.activeCell;
    if (!s.enabled || !s.model || !notebook || !cell || cell.model.type !== 'code') {
      return NOTHING;
    }
    const cells: ICellSource[] = notebook.widgets.map(c => ({
      type: c.model.type,
      source: c.model.sharedModel.getSource()
    }));
    if (notebookChars(cells) > s.maxNotebookChars) {
      return NOTHING;
    }
    const fields = infillFields(request.text, request.offset, cells, notebook.activeCellIndex, {
      ...DEFAULT_LIMITS,
      contextChars: s.contextChars
    });
    try {
      if (context.triggerKind !== INVOKE && s.debounceMs > 0) {
        await delay(s.debounceMs, controller.signal);
      }
      const resp = await this.client.fetch('v1/infill', {
        method: 'POST',
        body: JSON.stringify({ model: s.model, ...fields, n_predict: s.maxTokens, stop: ['\n\n'] }),
        headers: { 'Content-Type': 'application/json' },
        signal: controller.signal
      });
      const reply = (await resp.json()) as IInfillReply;
      this.lastMode = reply.mode;
      const text = suggestion(reply.content ?? '', fields.input_suffix);
      return text ? { items: [{ insertText: text }] } : NOTHING;
    } catch (e) {
      if ((e as any)?.name !== 'AbortError') {
        this._warnOnce(s.model, e);
      }
      return NOTHING;
    } finally {
      if (this._controller === controller) {
        this._controller = null;
      }
    }
  }

  /** One console line per model and cause, not one per keystroke. */
  private _warnOnce(model: string, e: unknown): void {
    const why = e instanceof ApiError ? `${e.status} ${e.code ?? ''}`.trim() : String(e);
    const key = `${model}: ${why}`;
    if (!this._warned.has(key)) {
      this._warned.add(key);
      console.warn(
        `bodhi-jupyter: no ghost text from '${model}' (${why}): ${(e as any)?.message ?? e}. ` +
          "Set 'completionModel' in Settings > Bodhi chat."
      );
    }
  }

  private _controller: AbortController | null = null;
  private _warned = new Set<string>();
}
