/**
 * Pieces every part of the Models view shares: the collapsible section (as JupyterLab's
 * Running panel and extension manager group their lists), icon and text buttons, an error
 * line, and what a section needs from the view (client, person, models, engines).
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { Button, caretDownIcon, caretRightIcon, LabIcon, ToolbarButtonComponent } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, BodhiClient, IUser, describeError } from '../api';
import { IModelFile, IProcess } from './types';

export interface ISectionProps {
  api: BodhiClient;
  trans: TranslationBundle;
  user: IUser | null;
  models: IModelFile[];
  processes: IProcess[];
  /** Reload the models (and tell the chat's picker) after something changed them. */
  modelsChanged: () => Promise<void>;
  /** Reload the engine processes now (and poll faster while one is starting). */
  processesChanged: () => Promise<void>;
}

/** What a person may do: write loads and unloads, admin changes aliases, upstreams, pulls. */
export function may(user: IUser | null, scope: 'write' | 'admin'): boolean {
  const order = ['read', 'write', 'admin'];
  return !!user && order.indexOf(user.scope) >= order.indexOf(scope);
}

/** An error as one line: what it means, then the server's own words. */
export function errorText(e: unknown, trans: TranslationBundle): string {
  if (e instanceof ApiError) {
    // a refused form or request: the server's words say what to change
    if ([400, 409, 413, 422].includes(e.status) && e.message) {
      return e.message;
    }
    const { title } = describeError(e, trans);
    return e.message && e.message !== title ? `${title}: ${e.message}` : title;
  }
  return String((e as any)?.message ?? e);
}

export function ErrorLine(props: { error: string | null; className?: string }): JSX.Element | null {
  return props.error ? (
    <div className={`bodhi-Error ${props.className ?? ''}`} role="alert">
      {props.error}
    </div>
  ) : null;
}

/** An icon button as in JupyterLab's own toolbars (the file browser's, a notebook's). */
export function Tool(props: {
  icon: LabIcon;
  tooltip: string;
  label?: string;
  className?: string;
  enabled?: boolean;
  onClick: () => void;
}): JSX.Element {
  return (
    <ToolbarButtonComponent
      icon={props.icon}
      tooltip={props.tooltip}
      label={props.label}
      className={props.className}
      enabled={props.enabled ?? true}
      onClick={props.onClick}
    />
  );
}

/** A text button styled like a dialog's (accept: the main action; reject: the other). */
export function TextButton(props: {
  kind?: 'accept' | 'reject' | 'warn';
  className?: string;
  disabled?: boolean;
  type?: 'button' | 'submit';
  onClick?: () => void;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <Button
      type={props.type ?? 'button'}
      className={`jp-mod-styled jp-mod-${props.kind ?? 'reject'} bodhi-Button ${props.className ?? ''}`}
      disabled={props.disabled}
      onClick={props.onClick}
    >
      {props.children}
    </Button>
  );
}

/** A titled, collapsible group with its own tools on the right of its header. */
export function Section(props: {
  id: string;
  title: string;
  count?: number;
  open: boolean;
  onToggle: () => void;
  tools?: React.ReactNode;
  children: React.ReactNode;
}): JSX.Element {
  const Caret = props.open ? caretDownIcon : caretRightIcon;
  return (
    <section className={`bodhi-Section ${props.open ? 'bodhi-mod-open' : ''}`} data-section={props.id}>
      <div className="bodhi-SectionBar">
        <button className="bodhi-SectionToggle" aria-expanded={props.open} onClick={props.onToggle}>
          <Caret.react tag="span" className="bodhi-SectionCaret" />
          <span className="bodhi-SectionTitle">{props.title}</span>
          {props.count !== undefined && <span className="bodhi-Count">{props.count}</span>}
        </button>
        {props.open && <span className="bodhi-SectionTools">{props.tools}</span>}
      </div>
      {props.open && <div className="bodhi-SectionBody">{props.children}</div>}
    </section>
  );
}

/** A small label: a model's source, quantization, a capability, a state word. */
export function Badge(props: { children: React.ReactNode; className?: string; title?: string }): JSX.Element {
  return (
    <span className={`bodhi-Badge ${props.className ?? ''}`} title={props.title}>
      {props.children}
    </span>
  );
}

/** Runs `fn` now and every `ms` while mounted (a new `ms` restarts the timer). */
export function usePoll(fn: () => void, ms: number | null, deps: React.DependencyList = []): void {
  const saved = React.useRef(fn);
  saved.current = fn;
  React.useEffect(() => {
    saved.current();
    if (ms === null) {
      return;
    }
    const t = window.setInterval(() => saved.current(), ms);
    return () => window.clearInterval(t);
  }, [ms, ...deps]);
}

/** A labelled form field in the sidebar's one-column layout. */
export function Field(props: { label: string; hint?: string; children: React.ReactNode; className?: string }): JSX.Element {
  return (
    <label className={`bodhi-Param ${props.className ?? ''}`}>
      <span>{props.label}</span>
      {props.children}
      {props.hint && <small className="bodhi-Hint">{props.hint}</small>}
    </label>
  );
}

/** Ask before a destructive action; true when the person confirmed it. */
export async function confirmed(title: string, body: string, action: string): Promise<boolean> {
  const r = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: action })]
  });
  return r.button.accept;
}
