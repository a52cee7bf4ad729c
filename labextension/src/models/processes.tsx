/**
 * Loaded engines: one row per llama-server process with its state, memory, requests in
 * flight and owner; unload it, or read the end of its log. Loading starts from a model's
 * row in Files or Aliases (its Load button), so there is one way to do it.
 */
import { closeIcon, fileIcon, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { shortDate } from '../text';
import { Badge, ErrorLine, ISectionProps, Tool, confirmed, errorText, may } from './common';
import { formatBytes } from './format';
import { IProcess } from './types';

const LOG_LINES = 40;

export function stateWord(state: string, trans: ISectionProps['trans']): string {
  switch (state) {
    case 'ready':
      return trans.__('ready');
    case 'starting':
      return trans.__('loading');
    case 'stopping':
      return trans.__('unloading');
    case 'crashed':
      return trans.__('crashed');
    case 'failed':
      return trans.__('failed');
    default:
      return trans.__(state);
  }
}

export function ProcessesBody(props: ISectionProps): JSX.Element {
  const { processes, trans } = props;
  const [error, setError] = React.useState<string | null>(null);
  return (
    <div className="bodhi-Processes">
      <ErrorLine error={error} />
      {processes.length === 0 && (
        <div className="bodhi-Empty">{trans.__('No engine is running. Load a model from Files or Aliases; a chat loads its model too.')}</div>
      )}
      {processes.map(p => (
        <ProcessRow key={p.id} {...props} process={p} onError={setError} />
      ))}
    </div>
  );
}

export function ProcessesTools(props: ISectionProps): JSX.Element {
  return (
    <Tool icon={refreshIcon} tooltip={props.trans.__('Refresh the engines')} className="bodhi-RefreshProcesses" onClick={() => void props.processesChanged()} />
  );
}

function ProcessRow(props: ISectionProps & { process: IProcess; onError: (e: string | null) => void }): JSX.Element {
  const { api, trans, process: p } = props;
  const [log, setLog] = React.useState<string[] | null>(null);
  const [busy, setBusy] = React.useState(false);
  const logBox = React.useRef<HTMLPreElement>(null);
  // a tail: its end is what matters, so it opens scrolled to the last line
  React.useEffect(() => {
    if (logBox.current) {
      logBox.current.scrollTop = logBox.current.scrollHeight;
    }
  }, [log]);

  const readLog = async () => {
    try {
      const r = await api.json<{ id: string; lines: string[] }>(`app/processes/${encodeURIComponent(p.id)}/log?lines=${LOG_LINES}`);
      setLog(r.lines);
      props.onError(null);
    } catch (e) {
      props.onError(errorText(e, trans));
    }
  };
  const unload = async () => {
    if (p.in_flight > 0) {
      const cut = trans.__('%1 request(s) are still being answered by this engine; unloading cuts them off.', p.in_flight);
      if (!(await confirmed(trans.__('Unload %1', p.model), cut, trans.__('Unload')))) {
        return;
      }
    }
    setBusy(true);
    try {
      await api.json(`app/processes/${encodeURIComponent(p.id)}`, 'DELETE');
      props.onError(null);
    } catch (e) {
      props.onError(errorText(e, trans));
    }
    setBusy(false);
    await props.processesChanged();
  };

  const meta = [
    p.memory_bytes !== null && p.memory_bytes !== undefined ? trans.__('%1 memory', formatBytes(p.memory_bytes)) : null,
    trans.__('%1 in flight', p.in_flight),
    p.started_at ? trans.__('since %1', shortDate(p.started_at)) : null,
    p.pid ? trans.__('pid %1', p.pid) : null,
    p.owner ? trans.__('owner %1', p.owner) : null
  ].filter(Boolean);

  return (
    <div className="bodhi-Item bodhi-Process" data-process-id={p.id} data-model={p.model} data-state={p.state}>
      <div className="bodhi-ItemHead">
        <span className="bodhi-ItemName" title={p.model}>
          {p.model}
        </span>
        <span className={`bodhi-State bodhi-mod-${p.state === 'starting' ? 'loading' : p.state}`}>{stateWord(p.state, trans)}</span>
      </div>
      <div className="bodhi-ItemBadges">{p.embedding && <Badge>{trans.__('embedding')}</Badge>}</div>
      <div className="bodhi-ListMeta bodhi-ProcessMeta">{meta.join(' · ')}</div>
      <div className="bodhi-ItemTools">
        <Tool
          icon={fileIcon}
          label={log ? trans.__('Hide log') : trans.__('Log')}
          tooltip={trans.__('The last %1 lines of the engine log', LOG_LINES)}
          className="bodhi-ProcessLog"
          onClick={() => (log ? setLog(null) : void readLog())}
        />
        {log && <Tool icon={refreshIcon} tooltip={trans.__('Read the log again')} className="bodhi-ProcessLogRefresh" onClick={() => void readLog()} />}
        <span className="bodhi-Spacer" />
        {may(props.user, 'write') && (
          <Tool icon={closeIcon} label={trans.__('Unload')} tooltip={trans.__('Stop this engine and free its memory')} className="bodhi-Unload bodhi-mod-danger" enabled={!busy && p.state !== 'stopping'} onClick={() => void unload()} />
        )}
      </div>
      {log && (
        <pre className="bodhi-Log" ref={logBox} aria-label={trans.__('Engine log')}>
          {log.length ? log.join('\n') : trans.__('(the log is empty)')}
        </pre>
      )}
    </div>
  );
}
