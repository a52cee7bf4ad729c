/**
 * Remote upstreams: other OpenAI-compatible servers whose models this server offers under
 * a prefix. Register (the API key is write-only: the list only says whether one is set),
 * edit, delete, and ask one for its models, which is also the connection check.
 */
import { addIcon, deleteIcon, editIcon, listIcon, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { IPage } from '../api';
import { Badge, ErrorLine, Field, ISectionProps, TextButton, Tool, confirmed, errorText, may } from './common';
import { IUpstream } from './types';

export function UpstreamsBody(props: ISectionProps & { reloadKey: number; newKey: number }): JSX.Element {
  const { api, trans } = props;
  const [upstreams, setUpstreams] = React.useState<IUpstream[] | null>(null);
  const [listError, setListError] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [editing, setEditing] = React.useState<{ upstream: IUpstream | null } | null>(null);
  React.useEffect(() => {
    if (props.newKey > 0) {
      setEditing({ upstream: null });
    }
  }, [props.newKey]);

  const load = async () => {
    try {
      setUpstreams((await api.json<IPage<IUpstream>>('app/upstreams?page_size=200')).data);
      setListError(null);
    } catch (e) {
      setListError(errorText(e, trans));
    }
  };
  React.useEffect(() => void load(), [props.reloadKey]);

  const remove = async (u: IUpstream) => {
    if (!(await confirmed(trans.__('Delete upstream'), trans.__('Delete "%1"? Its models leave the model list, with its stored API key.', u.name), trans.__('Delete')))) {
      return;
    }
    setError(null);
    try {
      await api.json(`app/upstreams/${encodeURIComponent(u.name)}`, 'DELETE');
    } catch (e) {
      setError(errorText(e, trans));
    }
    await load();
    await props.modelsChanged();
  };

  return (
    <div className="bodhi-Upstreams">
      {editing && (
        <UpstreamForm
          {...props}
          upstream={editing.upstream}
          onClose={async saved => {
            setEditing(null);
            if (saved) {
              await load();
              await props.modelsChanged();
            }
          }}
        />
      )}
      <ErrorLine error={error} className="bodhi-ActionError" />
      <ErrorLine error={listError} />
      {upstreams && upstreams.length === 0 && !editing && <div className="bodhi-Empty">{trans.__('No remote upstreams. Add an OpenAI-compatible server to offer its models here.')}</div>}
      {(upstreams ?? []).map(u => (
        <UpstreamRow key={u.name} {...props} upstream={u} onEdit={() => setEditing({ upstream: u })} onDelete={() => void remove(u)} editing={!!editing} />
      ))}
    </div>
  );
}

export function UpstreamsTools(props: ISectionProps & { onReload: () => void; onNew: () => void }): JSX.Element {
  return (
    <>
      {may(props.user, 'admin') && <Tool icon={addIcon} tooltip={props.trans.__('Add an upstream')} className="bodhi-NewUpstream" onClick={props.onNew} />}
      <Tool icon={refreshIcon} tooltip={props.trans.__('Refresh the upstreams')} className="bodhi-RefreshUpstreams" onClick={props.onReload} />
    </>
  );
}

function UpstreamRow(props: ISectionProps & { upstream: IUpstream; editing: boolean; onEdit: () => void; onDelete: () => void }): JSX.Element {
  const { api, trans, upstream: u } = props;
  const [remote, setRemote] = React.useState<{ models?: string[]; error?: string } | null>(null);
  const [checking, setChecking] = React.useState(false);
  const check = async () => {
    setChecking(true);
    try {
      const r = await api.json<{ models: any[] }>(`app/upstreams/${encodeURIComponent(u.name)}/models`);
      setRemote({ models: (r.models ?? []).map(m => (typeof m === 'string' ? m : String(m?.id ?? m))) });
    } catch (e) {
      setRemote({ error: errorText(e, trans) });
    }
    setChecking(false);
  };
  const prefix = u.prefix ?? `${u.name}/`;
  return (
    <div className="bodhi-Item bodhi-Upstream" data-upstream={u.name}>
      <div className="bodhi-ItemHead">
        <span className="bodhi-ItemName" title={u.name}>
          {u.name}
        </span>
      </div>
      <div className="bodhi-ListMeta bodhi-UpstreamUrl" title={u.base_url}>
        {u.base_url}
      </div>
      <div className="bodhi-ItemBadges">
        <Badge title={trans.__('Its models are offered under this prefix')}>{trans.__('prefix %1', prefix || '—')}</Badge>
        <Badge className="bodhi-UpstreamKey">{u.has_api_key ? trans.__('API key set') : trans.__('no API key')}</Badge>
        <Badge title={(u.models ?? []).join(', ')}>{u.models ? trans.__('%1 models listed', u.models.length) : trans.__('all its models')}</Badge>
      </div>
      <div className="bodhi-ItemTools">
        <Tool icon={listIcon} label={checking ? trans.__('Asking…') : trans.__('Models')} tooltip={trans.__('Ask the upstream for its models (checks the connection)')} className="bodhi-UpstreamModels" enabled={!checking} onClick={() => void check()} />
        <span className="bodhi-Spacer" />
        {may(props.user, 'admin') && (
          <>
            <Tool icon={editIcon} tooltip={trans.__('Edit')} className="bodhi-EditUpstream" enabled={!props.editing} onClick={props.onEdit} />
            <Tool icon={deleteIcon} tooltip={trans.__('Delete')} className="bodhi-DeleteUpstream bodhi-mod-danger" onClick={props.onDelete} />
          </>
        )}
      </div>
      {remote?.error && <ErrorLine error={remote.error} className="bodhi-UpstreamError" />}
      {remote?.models && (
        <ul className="bodhi-RemoteModels" aria-label={trans.__('Models of %1', u.name)}>
          {remote.models.length === 0 && <li className="bodhi-Empty">{trans.__('It reports no models.')}</li>}
          {remote.models.map(m => (
            <li key={m} title={`${prefix}${m}`}>
              {m}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function UpstreamForm(props: ISectionProps & { upstream: IUpstream | null; onClose: (saved: boolean) => void }): JSX.Element {
  const { api, trans, upstream } = props;
  const [name, setName] = React.useState(upstream?.name ?? '');
  const [url, setUrl] = React.useState(upstream?.base_url ?? '');
  const [key, setKey] = React.useState('');
  const [clearKey, setClearKey] = React.useState(false);
  const [prefix, setPrefix] = React.useState(upstream?.prefix ?? '');
  const [models, setModels] = React.useState((upstream?.models ?? []).join('\n'));
  const [error, setError] = React.useState<string | null>(null);
  const [saving, setSaving] = React.useState(false);

  const save = async () => {
    const body: Record<string, unknown> = { name: name.trim(), base_url: url.trim() };
    const list = models.split(/[\n,]/).map(s => s.trim()).filter(Boolean);
    body.models = list.length ? list : null;
    body.prefix = prefix.trim() ? prefix.trim() : null;
    if (key) {
      body.api_key = key;
    } else if (clearKey || !upstream) {
      body.api_key = null;
    }
    setSaving(true);
    try {
      if (upstream) {
        await api.json(`app/upstreams/${encodeURIComponent(upstream.name)}`, 'PUT', body);
      } else {
        await api.json('app/upstreams', 'POST', body);
      }
      setSaving(false);
      props.onClose(true);
    } catch (e) {
      setSaving(false);
      setError(errorText(e, trans));
    }
  };

  return (
    <form
      className="bodhi-Form bodhi-UpstreamForm"
      onSubmit={e => {
        e.preventDefault();
        void save();
      }}
    >
      <div className="bodhi-FormHead">{upstream ? trans.__('Edit upstream %1', upstream.name) : trans.__('Add upstream')}</div>
      <Field label={trans.__('Name')}>
        <input className="jp-mod-styled bodhi-UpstreamName" value={name} required disabled={!!upstream} maxLength={64} onChange={e => setName(e.target.value)} />
      </Field>
      <Field label={trans.__('Base URL (OpenAI-compatible, ending in /v1)')}>
        <input className="jp-mod-styled bodhi-UpstreamBaseUrl" type="url" value={url} required placeholder="https://api.example.com/v1" onChange={e => setUrl(e.target.value)} />
      </Field>
      <Field label={upstream?.has_api_key ? trans.__('API key (empty: keep the stored one)') : trans.__('API key (optional)')}>
        <input className="jp-mod-styled bodhi-UpstreamKeyInput" type="password" autoComplete="off" value={key} onChange={e => setKey(e.target.value)} />
      </Field>
      {upstream?.has_api_key && (
        <label className="bodhi-Check">
          <input type="checkbox" checked={clearKey} disabled={!!key} onChange={e => setClearKey(e.target.checked)} />
          {trans.__('Remove the stored key')}
        </label>
      )}
      <Field label={trans.__('Prefix of its model names')} hint={trans.__('empty: "%1/"', name || trans.__('name'))}>
        <input className="jp-mod-styled bodhi-UpstreamPrefix" value={prefix} onChange={e => setPrefix(e.target.value)} />
      </Field>
      <Field label={trans.__('Models to offer (one per line; empty: all it lists)')}>
        <textarea className="jp-mod-styled bodhi-UpstreamModelList" rows={2} value={models} onChange={e => setModels(e.target.value)} />
      </Field>
      <ErrorLine error={error} className="bodhi-FormError" />
      <div className="bodhi-Actions">
        <TextButton onClick={() => props.onClose(false)}>{trans.__('Cancel')}</TextButton>
        <TextButton kind="accept" type="submit" className="bodhi-SaveUpstream" disabled={saving || !name.trim() || !url.trim()}>
          {upstream ? trans.__('Save') : trans.__('Add')}
        </TextButton>
      </div>
    </form>
  );
}
