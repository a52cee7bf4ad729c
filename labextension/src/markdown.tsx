/**
 * Markdown through JupyterLab's rendermime: sanitized (models are untrusted, so a reply
 * cannot run script), code highlighted, math typeset. While a reply streams, the text
 * grows in a `TextSource` and the view re-renders at most once per animation frame —
 * never once per token, and never through React.
 */
import { IRenderMimeRegistry, IRenderMime } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';
import { addIcon, copyIcon, LabIcon, pasteIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

/** A growing text that views subscribe to. */
export class TextSource {
  constructor(public text = '') {}

  append(more: string): void {
    this.text += more;
    this.listeners.forEach(l => l());
  }

  set(text: string): void {
    this.text = text;
    this.listeners.forEach(l => l());
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private listeners = new Set<() => void>();
}

export interface ICodeActions {
  copy: (code: string) => void;
  insert?: (code: string) => void;
  replace?: (code: string) => void;
  labels: { copy: string; insert: string; replace: string };
}

/** Hook for the benchmark: told when text is on screen. */
declare global {
  interface Window {
    bodhiRenderHook?: (text: string, at: number, streaming: boolean) => void;
  }
}

/** Renders `source` (or fixed `text`), batching changes per animation frame. */
export function Markdown(props: {
  rendermime: IRenderMimeRegistry;
  text?: string;
  source?: TextSource;
  codeActions?: ICodeActions;
}): JSX.Element {
  const host = React.useRef<HTMLDivElement>(null);
  const { rendermime, source, codeActions } = props;
  const textRef = React.useRef(props.text ?? '');
  textRef.current = source ? source.text : (props.text ?? '');
  const state = React.useRef<{
    renderer: IRenderMime.IRenderer | null;
    frame: number;
    busy: boolean;
    dirty: boolean;
    shown: string | null;
  }>({ renderer: null, frame: 0, busy: false, dirty: false, shown: null });

  const render = React.useCallback(async () => {
    const s = state.current;
    s.frame = 0;
    if (!s.renderer) {
      return;
    }
    if (s.busy) {
      s.dirty = true;
      return;
    }
    const text = source ? source.text : textRef.current;
    if (text === s.shown) {
      // the same text, now final: only the code buttons may be new
      if (codeActions && host.current) {
        addCodeButtons(host.current, codeActions);
      }
      return;
    }
    s.busy = true;
    s.dirty = false;
    try {
      const model = rendermime.createModel({
        data: { 'text/markdown': text },
        trusted: false
      });
      await s.renderer.renderModel(model);
      s.shown = text;
      if (codeActions && host.current) {
        addCodeButtons(host.current, codeActions);
      }
      window.bodhiRenderHook?.(text, performance.timeOrigin + performance.now(), !!source);
    } finally {
      s.busy = false;
    }
    if (s.dirty) {
      schedule();
    }
  }, [rendermime, source, codeActions]);

  const schedule = React.useCallback(() => {
    const s = state.current;
    if (!s.frame) {
      s.frame = requestAnimationFrame(() => void render());
    }
  }, [render]);

  // a layout effect: its cleanup runs while the host is still in the document, which
  // Lumino needs to detach the renderer
  React.useLayoutEffect(() => {
    const renderer = rendermime.createRenderer('text/markdown');
    renderer.addClass('bodhi-Markdown');
    state.current.renderer = renderer;
    state.current.shown = null;
    if (host.current) {
      Widget.attach(renderer, host.current);
    }
    void render();
    return () => {
      if (state.current.frame) {
        cancelAnimationFrame(state.current.frame);
        state.current.frame = 0;
      }
      state.current.renderer = null;
      try {
        if (renderer.isAttached) {
          Widget.detach(renderer);
        }
        renderer.dispose();
      } catch (e) {
        console.warn('bodhi-jupyter: renderer cleanup', e);
      }
    };
  }, [rendermime]);

  React.useEffect(() => (source ? source.subscribe(schedule) : undefined), [source, schedule]);
  React.useEffect(() => {
    if (!source) {
      schedule();
    }
  }, [props.text, source, schedule]);

  return <div className="bodhi-MarkdownHost" ref={host} />;
}

function addCodeButtons(root: HTMLElement, actions: ICodeActions): void {
  root.querySelectorAll('pre').forEach(pre => {
    if (pre.parentElement?.classList.contains('bodhi-CodeBlock')) {
      return;
    }
    const wrap = document.createElement('div');
    wrap.className = 'bodhi-CodeBlock';
    pre.replaceWith(wrap);
    const bar = document.createElement('div');
    bar.className = 'bodhi-CodeBar';
    const code = () => pre.textContent ?? '';
    // plain DOM (these blocks live outside React), styled as JupyterLab's toolbar buttons
    const button = (label: string, icon: LabIcon, cls: string, run: (c: string) => void) => {
      const b = document.createElement('button');
      b.className = `jp-Button jp-mod-minimal bodhi-CodeButton ${cls}`;
      b.title = label;
      b.setAttribute('aria-label', label);
      b.appendChild(icon.element({ tag: 'span', className: 'bodhi-CodeButtonIcon' }));
      b.onclick = () => run(code());
      bar.appendChild(b);
    };
    button(actions.labels.copy, copyIcon, 'bodhi-CodeCopy', actions.copy);
    if (actions.insert) {
      button(actions.labels.insert, addIcon, 'bodhi-CodeInsert', actions.insert);
    }
    if (actions.replace) {
      button(actions.labels.replace, pasteIcon, 'bodhi-CodeReplace', actions.replace);
    }
    wrap.appendChild(bar);
    wrap.appendChild(pre);
  });
}
