/**
 * API tokens in the panel: create (a scope no higher than the person's role allows; the
 * secret shown once with a ready-to-paste snippet for this server), list, deactivate,
 * reactivate and delete (confirmed: it cannot be undone).
 */
import { Clipboard, Dialog, showDialog } from '@jupyterlab/apputils';
import { TranslationBundle } from '@jupyterlab/translation';
import { Button, checkIcon, closeIcon, copyIcon, deleteIcon, HTMLSelect, ToolbarButtonComponent } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, BodhiClient, IPage, IToken, IUser, describeError } from './api';
import { grantableScopes, shortDate, snippet } from './text';

const EXPIRIES: [string, number | null][] = [
  ['Never', null],
  ['1 day', 86400],
  ['30 days', 30 * 86400],
  ['90 days', 90 * 86400]
];

export function TokensView(props: { api: BodhiClient; trans: TranslationBundle; models: string[]; user: IUser | null }): JSX.Element {
  const { api, trans, models, user } = props;
  const [tokens, setTokens] = React.useState<IToken[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const [created, setCreated] = React.useState<IToken | null>(null);
  const scopes = grantableScopes(user?.scope);
  const [name, setName] = React.useState('');
  const [scope, setScope] = React.useState(scopes.includes('write') ? 'write' : scopes[0]);
  const [expiry, setExpiry] = React.useState(0);
  const [picked, setPicked] = React.useState<string[]>([]);

  const fail = (e: unknown) => setError(e instanceof ApiError ? `${describeError(e, trans).title}: ${e.message}` : String(e));
  const load = async () => {
    try {
      setTokens((await api.json<IPage<IToken>>('app/tokens?page_size=200')).data);
      setError(null);
    } catch (e) {
      fail(e);
    }
  };
  React.useEffect(() => void load(), []);

  const create = async () => {
    try {
      const body: Record<string, unknown> = { name: name.trim(), scope };
      const seconds = EXPIRIES[expiry][1];
      if (seconds) {
        body.expires_in = seconds;
      }
      if (picked.length) {
        body.models = picked;
      }
      setCreated(await api.json<IToken>('app/tokens', 'POST', body));
      setName('');
      setPicked([]);
      await load();
    } catch (e) {
      fail(e);
    }
  };
  const setStatus = async (t: IToken, status: string) => {
    try {
      await api.json(`app/tokens/${t.id}`, 'PUT', { status });
      await load();
    } catch (e) {
      fail(e);
    }
  };
  const remove = async (t: IToken) => {
    const r = await showDialog({
      title: trans.__('Delete API token'),
      body: trans.__('Delete "%1" (%2…)? Programs using it stop working. This cannot be undone.', t.name, t.prefix),
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: trans.__('Delete') })]
    });
    if (r.button.accept) {
      try {
        await api.json(`app/tokens/${t.id}`, 'DELETE');
        await load();
      } catch (e) {
        fail(e);
      }
    }
  };
  const when = (s: string | null) => (s ? shortDate(s) : '—');
  // kernels' own credentials come and go with the kernels: counted, not listed for managing
  const mine = tokens.filter(t => !t.kernel);
  const kernels = tokens.length - mine.length;

  return (
    <div className="bodhi-Tokens">
      <div className="bodhi-SectionHead">{trans.__('New API token')}</div>
      <form
        className="bodhi-TokenForm"
        onSubmit={e => {
          e.preventDefault();
          void create();
        }}
      >
        <label className="bodhi-Param">
          <span>{trans.__('Name')}</span>
          <input className="bodhi-TokenName jp-mod-styled" value={name} required maxLength={255} onChange={e => setName(e.target.value)} />
        </label>
        <label className="bodhi-Param">
          <span>{trans.__('Scope')}</span>
          <HTMLSelect className="bodhi-TokenScope" value={scope} onChange={e => setScope(e.target.value)}>
            {scopes.map(s => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </HTMLSelect>
        </label>
        <label className="bodhi-Param">
          <span>{trans.__('Expires')}</span>
          <HTMLSelect className="bodhi-TokenExpiry" value={expiry} onChange={e => setExpiry(Number(e.target.value))}>
            {EXPIRIES.map(([label], i) => (
              <option key={label} value={i}>
                {trans.__(label)}
              </option>
            ))}
          </HTMLSelect>
        </label>
        <fieldset className="bodhi-Param">
          <legend>{trans.__('Models (none ticked: all)')}</legend>
          {models.map(m => (
            <label key={m} className="bodhi-Check">
              <input type="checkbox" className="bodhi-TokenModel" value={m} checked={picked.includes(m)} onChange={e => setPicked(e.target.checked ? [...picked, m] : picked.filter(x => x !== m))} />
              {m}
            </label>
          ))}
        </fieldset>
        <Button className="jp-mod-styled jp-mod-accept bodhi-Button bodhi-TokenCreate" type="submit" disabled={!name.trim()}>
          {trans.__('Create token')}
        </Button>
      </form>
      {created?.token && (
        <div className="bodhi-Secret" role="status">
          <strong>{trans.__('Copy this token now: it is shown only once.')}</strong>
          <code className="bodhi-SecretValue">{created.token}</code>
          <ToolbarButtonComponent icon={copyIcon} label={trans.__('Copy token')} tooltip={trans.__('Copy token')} className="bodhi-CopyToken" onClick={() => Clipboard.copyToSystem(created.token!)} />
          <pre className="bodhi-Snippet">{snippet(api.openaiBaseUrl, created.token)}</pre>
          <div className="bodhi-Actions">
            <ToolbarButtonComponent
              icon={copyIcon}
              label={trans.__('Copy snippet')}
              tooltip={trans.__('Copy snippet')}
              className="bodhi-CopySnippet"
              onClick={() => Clipboard.copyToSystem(snippet(api.openaiBaseUrl, created.token!))}
            />
            <span className="bodhi-Spacer" />
            <Button className="jp-mod-styled jp-mod-accept bodhi-Button" onClick={() => setCreated(null)}>
              {trans.__('Done')}
            </Button>
          </div>
        </div>
      )}
      {error && (
        <div className="bodhi-Error" role="alert">
          {error}
        </div>
      )}
      <div className="bodhi-SectionHead">{trans.__('Your API tokens')}</div>
      <div className="bodhi-TokenList">
        {mine.length === 0 && <div className="bodhi-Empty">{trans.__('No API tokens yet.')}</div>}
        {mine.map(t => (
          <div key={t.id} className={`bodhi-Token bodhi-mod-${t.status}`} data-token-id={t.id}>
            <div className="bodhi-Row">
              <strong>{t.name}</strong> <code>{t.prefix}…</code> <span className="bodhi-Badge">{t.scope}</span>
              <span className="bodhi-Badge">{trans.__(t.status)}</span>
            </div>
            <div className="bodhi-ListMeta">
              {trans.__('models: %1', t.models ? t.models.join(', ') : trans.__('all'))} · {trans.__('created %1', when(t.created_at))} ·{' '}
              {trans.__('last used %1', when(t.last_used_at))} · {trans.__('expires %1', t.expires_at ? when(t.expires_at) : trans.__('never'))}
            </div>
            <div className="bodhi-Row bodhi-TokenTools">
              {t.status === 'active' ? (
                <ToolbarButtonComponent icon={closeIcon} label={trans.__('Deactivate')} tooltip={trans.__('Deactivate: refuse it until reactivated')} onClick={() => void setStatus(t, 'inactive')} />
              ) : t.status === 'inactive' ? (
                <ToolbarButtonComponent icon={checkIcon} label={trans.__('Reactivate')} tooltip={trans.__('Reactivate')} onClick={() => void setStatus(t, 'active')} />
              ) : null}
              <ToolbarButtonComponent icon={deleteIcon} label={trans.__('Delete')} tooltip={trans.__('Delete for good')} className="bodhi-mod-danger" onClick={() => void remove(t)} />
            </div>
          </div>
        ))}
      </div>
      {kernels > 0 && (
        <div className="bodhi-ListMeta bodhi-KernelTokens">
          {trans._n(
            '%1 running notebook kernel holds its own inference credential (deleted with the kernel).',
            '%1 running notebook kernels hold their own inference credentials (deleted with each kernel).',
            kernels
          )}
        </div>
      )}
    </div>
  );
}
