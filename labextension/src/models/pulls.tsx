/**
 * Pulls from the Hugging Face hub: start one by `owner/repo` and file name, watch its bar
 * (bytes, speed, time left), cancel it (its partial files go), retry a failed or cancelled
 * one (it resumes). Finished pulls name the model they added.
 */
import { closeIcon, downloadIcon, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IPage } from '../api';
import { shortDate } from '../text';
import { Badge, ErrorLine, Field, ISectionProps, TextButton, Tool, errorText, may, usePoll } from './common';
import { pullFraction, pullSummary } from './format';
import { IPull } from './types';

const ACTIVE = new Set(['queued', 'running']);

export function PullsBody(props: ISectionProps & { reloadKey: number }): JSX.Element {
  const { api, trans } = props;
  const [pulls, setPulls] = React.useState<IPull[] | null>(null);
  const [listError, setListError] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [repo, setRepo] = React.useState('');
  const [filename, setFilename] = React.useState('');
  const [revision, setRevision] = React.useState('');
  const [starting, setStarting] = React.useState(false);
  const finished = React.useRef<Set<string>>(new Set());

  const load = async () => {
    try {
      const list = (await api.json<IPage<IPull>>('app/models/pulls?page_size=50')).data;
      setPulls(list);
      setListError(null);
      // a pull that has just finished added a model: the lists should show it
      const done = list.filter(p => p.state === 'done' && !finished.current.has(p.id));
      if (pulls !== null && done.length) {
        void props.modelsChanged();
      }
      done.forEach(p => finished.current.add(p.id));
    } catch (e) {
      setListError(errorText(e, trans));
    }
  };
  const active = (pulls ?? []).some(p => ACTIVE.has(p.state));
  usePoll(() => void load(), active ? 1000 : null, [props.reloadKey]);

  const act = async (fn: () => Promise<unknown>) => {
    setError(null);
    try {
      await fn();
    } catch (e) {
      setError(errorText(e, trans));
    }
    await load();
  };
  const start = async () => {
    setStarting(true);
    const body: Record<string, string> = { repo: repo.trim(), filename: filename.trim() };
    if (revision.trim()) {
      body.revision = revision.trim();
    }
    await act(() => api.json('app/models/pulls', 'POST', body));
    setStarting(false);
  };

  return (
    <div className="bodhi-Pulls">
      {may(props.user, 'admin') && (
        <form
          className="bodhi-Form bodhi-PullForm"
          onSubmit={e => {
            e.preventDefault();
            void start();
          }}
        >
          <Field label={trans.__('Repository (owner/name)')}>
            <input className="jp-mod-styled bodhi-PullRepo" value={repo} required placeholder="HuggingFaceTB/SmolLM2-135M-Instruct-GGUF" onChange={e => setRepo(e.target.value)} />
          </Field>
          <Field label={trans.__('File (.gguf; the first part of a split model)')}>
            <input className="jp-mod-styled bodhi-PullFile" value={filename} required placeholder="model-Q4_K_M.gguf" onChange={e => setFilename(e.target.value)} />
          </Field>
          <Field label={trans.__('Revision (optional)')}>
            <input className="jp-mod-styled bodhi-PullRevision" value={revision} placeholder="main" onChange={e => setRevision(e.target.value)} />
          </Field>
          <div className="bodhi-Actions">
            <TextButton kind="accept" type="submit" className="bodhi-StartPull" disabled={starting || !repo.trim() || !filename.trim()}>
              <downloadIcon.react tag="span" className="bodhi-ButtonIcon" />
              {trans.__('Pull')}
            </TextButton>
          </div>
        </form>
      )}
      <ErrorLine error={error} className="bodhi-ActionError" />
      <ErrorLine error={listError} />
      {pulls && pulls.length === 0 && <div className="bodhi-Empty">{trans.__('No pulls yet.')}</div>}
      {(pulls ?? []).map(p => (
        <PullRow key={p.id} {...props} pull={p} onCancel={() => act(() => api.json(`app/models/pulls/${p.id}`, 'DELETE'))} onRetry={() => act(() => api.json(`app/models/pulls/${p.id}/retry`, 'POST'))} />
      ))}
    </div>
  );
}

export function PullsTools(props: ISectionProps & { onReload: () => void }): JSX.Element {
  return <Tool icon={refreshIcon} tooltip={props.trans.__('Refresh the pulls')} className="bodhi-RefreshPulls" onClick={props.onReload} />;
}

function PullRow(props: ISectionProps & { pull: IPull; onCancel: () => Promise<void>; onRetry: () => Promise<void> }): JSX.Element {
  const { trans, pull: p } = props;
  const fraction = pullFraction(p.bytes_done, p.bytes_total);
  const percent = fraction === null ? null : Math.floor(fraction * 100);
  const states: Record<string, string> = {
    queued: trans.__('queued'),
    running: trans.__('pulling'),
    done: trans.__('done'),
    failed: trans.__('failed'),
    cancelled: trans.__('cancelled')
  };
  const admin = may(props.user, 'admin');
  return (
    <div className={`bodhi-Item bodhi-Pull bodhi-mod-${p.state}`} data-pull-id={p.id} data-state={p.state}>
      <div className="bodhi-ItemHead">
        <span className="bodhi-ItemName" title={`${p.repo}/${p.filename}`}>
          {p.filename}
        </span>
        <Badge className="bodhi-PullState">{states[p.state] ?? p.state}</Badge>
      </div>
      <div className="bodhi-ListMeta" title={p.revision ? `${p.repo}@${p.revision}` : p.repo}>
        {p.revision ? `${p.repo}@${p.revision}` : p.repo}
      </div>
      {p.state !== 'done' && (
        <div
          className={`bodhi-Progress ${fraction === null ? 'bodhi-mod-indeterminate' : ''}`}
          role="progressbar"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={percent ?? undefined}
          aria-label={trans.__('Progress of %1', p.filename)}
        >
          <div className="bodhi-ProgressFill" style={{ width: fraction === null ? undefined : `${fraction * 100}%` }} />
        </div>
      )}
      <div className="bodhi-ListMeta bodhi-PullSummary">
        {percent !== null && p.state !== 'done' ? `${percent}% · ` : ''}
        {pullSummary(p, trans)}
        {p.files.length > 1 ? ` · ${trans.__('%1 parts', p.files.length)}` : ''}
        {p.state === 'done' || p.state === 'failed' || p.state === 'cancelled' ? ` · ${shortDate(p.updated_at)}` : ''}
      </div>
      {p.state === 'done' && p.model_id && <div className="bodhi-ListMeta bodhi-PullModel">{trans.__('Added model %1', p.model_id)}</div>}
      {p.error && <ErrorLine error={p.error.message} className="bodhi-PullError" />}
      {admin && (ACTIVE.has(p.state) || p.state === 'failed' || p.state === 'cancelled') && (
        <div className="bodhi-ItemTools">
          <span className="bodhi-Spacer" />
          {ACTIVE.has(p.state) ? (
            <Tool icon={closeIcon} label={trans.__('Cancel')} tooltip={trans.__('Stop the pull and remove what it has downloaded')} className="bodhi-CancelPull bodhi-mod-danger" onClick={() => void props.onCancel()} />
          ) : (
            <Tool icon={refreshIcon} label={trans.__('Retry')} tooltip={trans.__('Pull again, resuming where it stopped')} className="bodhi-RetryPull" onClick={() => void props.onRetry()} />
          )}
        </div>
      )}
    </div>
  );
}
