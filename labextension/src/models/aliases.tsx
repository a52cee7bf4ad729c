/**
 * Aliases: a name for a model file with request defaults and engine options, or a router
 * over other models. Create, edit and delete (aliases from the server's config are read
 * only); llama-server flags are chosen from the server's allow list, each with its help,
 * and a flag the server refuses is marked with the server's message.
 */
import { addIcon, closeIcon, deleteIcon, downloadIcon, editIcon, fileUploadIcon, HTMLSelect, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, IPage } from '../api';
import { Badge, ErrorLine, Field, ISectionProps, TextButton, Tool, confirmed, errorText, may } from './common';
import { EngineState, LoadButton, fileModels, useLoader } from './files';
import { IFlagRow, flagArgs, flagRows, typedValue } from './format';
import { IAlias, IAliasOptions, IFlagOption, IModelFile } from './types';

type Kind = 'int' | 'float' | 'str';

const REQUEST_FIELDS: { key: string; label: string; kind: Kind | 'text' | 'list' }[] = [
  { key: 'system_prompt', label: 'System prompt', kind: 'text' },
  { key: 'temperature', label: 'Temperature', kind: 'float' },
  { key: 'top_p', label: 'Top p', kind: 'float' },
  { key: 'max_tokens', label: 'Max tokens', kind: 'int' },
  { key: 'seed', label: 'Seed', kind: 'int' },
  { key: 'stop', label: 'Stop (one per line)', kind: 'list' }
];

/** Server options with a field of their own (extra_args are the flag rows). */
const SERVER_FIELDS: Record<string, { label: string; kind: Kind; choices?: string[]; hint?: string }> = {
  ctx_size: { label: 'Context (-c)', kind: 'int' },
  parallel: { label: 'Slots (-np)', kind: 'int' },
  gpu_layers: { label: 'GPU layers (-ngl)', kind: 'int' },
  pooling: { label: 'Pooling', kind: 'str', choices: ['', 'mean', 'cls', 'last', 'rank', 'none'] },
  chat_template: { label: 'Chat template', kind: 'str', hint: "a llama.cpp template name, e.g. 'chatml'" },
  chat_template_file: { label: 'Chat template file', kind: 'str' },
  mmproj: { label: 'Multimodal projector (mmproj GGUF)', kind: 'str' }
};

interface IDraft {
  name: string;
  router: boolean;
  model: string;
  targets: string;
  request: Record<string, string>;
  server: Record<string, string>;
  flags: IFlagRow[];
}

function show(v: unknown): string {
  return v === undefined || v === null ? '' : Array.isArray(v) ? v.join('\n') : String(v);
}

export function draftOf(a: IAlias | null, model = ''): IDraft {
  return {
    name: a?.name ?? '',
    router: !!a?.targets,
    model: a?.model ?? model,
    targets: (a?.targets ?? []).join('\n'),
    request: Object.fromEntries(REQUEST_FIELDS.map(f => [f.key, show(a?.request?.[f.key])])),
    server: Object.fromEntries(Object.keys(SERVER_FIELDS).map(k => [k, show(a?.server?.[k])])),
    flags: flagRows(a?.server?.extra_args ?? [])
  };
}

/** The alias the draft describes, with unset fields left out. */
export function aliasBody(d: IDraft): Record<string, unknown> {
  const request: Record<string, unknown> = {};
  for (const f of REQUEST_FIELDS) {
    const raw = d.request[f.key] ?? '';
    if (!raw.trim()) {
      continue;
    }
    request[f.key] = f.kind === 'list' ? raw.split('\n').filter(s => s.trim()) : f.kind === 'text' ? raw : typedValue(raw, f.kind);
  }
  const server: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(SERVER_FIELDS)) {
    const v = typedValue(d.server[k] ?? '', f.kind);
    if (v !== null) {
      server[k] = v;
    }
  }
  const extra = flagArgs(d.flags);
  if (extra.length) {
    server.extra_args = extra;
  }
  const body: Record<string, unknown> = { name: d.name.trim(), request, server };
  if (d.router) {
    body.targets = d.targets.split('\n').map(s => s.trim()).filter(Boolean);
  } else {
    body.model = d.model;
  }
  return body;
}

export function AliasesBody(props: ISectionProps & { draftModel: string | null; onDraftTaken: () => void; reloadKey: number; notice: INotice | null }): JSX.Element {
  const { api, trans } = props;
  const [aliases, setAliases] = React.useState<IAlias[] | null>(null);
  const [options, setOptions] = React.useState<IAliasOptions | null>(null);
  const [listError, setListError] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [editing, setEditing] = React.useState<{ alias: IAlias | null; model: string } | null>(null);
  const loader = useLoader(props);

  const load = async () => {
    try {
      setAliases((await api.json<IPage<IAlias>>('app/aliases?page_size=200')).data);
      setListError(null);
    } catch (e) {
      setListError(errorText(e, trans));
    }
  };
  React.useEffect(() => void load(), [props.reloadKey]);
  React.useEffect(() => {
    if (props.draftModel !== null) {
      setEditing({ alias: null, model: props.draftModel || (fileModels(props.models)[0]?.id ?? '') });
      props.onDraftTaken();
    }
  }, [props.draftModel]);
  React.useEffect(() => {
    if (editing && !options) {
      api
        .json<IAliasOptions>('app/aliases/options')
        .then(setOptions)
        .catch(() => setOptions({ flags: [], server_options: [] }));
    }
  }, [editing]);

  const remove = async (a: IAlias) => {
    if (!(await confirmed(trans.__('Delete alias'), trans.__('Delete the alias "%1"? Requests naming it will fail. The model file stays.', a.name), trans.__('Delete')))) {
      return;
    }
    setError(null);
    try {
      await api.json(`app/aliases/${encodeURIComponent(a.name)}`, 'DELETE');
    } catch (e) {
      setError(errorText(e, trans));
    }
    await load();
    await props.modelsChanged();
  };

  const modelOf = (a: IAlias): IModelFile => props.models.find(m => m.id === a.name) ?? { id: a.name, source: 'alias', request_defaults: {} };

  return (
    <div className="bodhi-Aliases">
      {editing && (
        <AliasForm
          {...props}
          alias={editing.alias}
          model={editing.model}
          options={options}
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
      {props.notice?.error && <ErrorLine error={props.notice.text} className="bodhi-AliasNotice" />}
      {props.notice && !props.notice.error && (
        <div className="bodhi-Notice bodhi-AliasNotice" role="status">
          {props.notice.text}
        </div>
      )}
      {aliases && aliases.length === 0 && !editing && <div className="bodhi-Empty">{trans.__('No aliases yet.')}</div>}
      {(aliases ?? []).map(a => (
        <div key={a.name} className="bodhi-Item bodhi-Alias" data-alias={a.name}>
          <div className="bodhi-ItemHead">
            <span className="bodhi-ItemName" title={a.name}>
              {a.name}
            </span>
            <EngineState processes={props.processes} id={a.name} trans={trans} />
          </div>
          <div className="bodhi-ListMeta bodhi-AliasTarget" title={a.targets ? a.targets.join(' → ') : (a.model ?? '')}>
            {a.targets ? trans.__('router: %1', a.targets.join(' → ')) : trans.__('→ %1', a.model ?? '')}
          </div>
          <div className="bodhi-ItemBadges">
            {a.source === 'config' && (
              <Badge className="bodhi-AliasSource" title={trans.__('Defined in the server configuration: read only')}>
                {trans.__('config · read only')}
              </Badge>
            )}
            {Object.entries(a.server ?? {})
              .filter(([k, v]) => k !== 'extra_args' && v !== null && v !== undefined && v !== '')
              .map(([k, v]) => (
                <Badge key={k}>{`${k} ${v}`}</Badge>
              ))}
            {(a.server?.extra_args ?? []).length > 0 && (
              <Badge className="bodhi-AliasFlags" title={trans.__('Extra llama-server flags')}>
                {(a.server.extra_args ?? []).join(' ')}
              </Badge>
            )}
          </div>
          <div className="bodhi-ItemTools">
            {!a.targets && <LoadButton {...props} model={modelOf(a)} loader={loader} />}
            <span className="bodhi-Spacer" />
            {may(props.user, 'admin') && a.source !== 'config' && (
              <>
                <Tool icon={editIcon} tooltip={trans.__('Edit')} className="bodhi-EditAlias" enabled={!editing} onClick={() => setEditing({ alias: a, model: a.model ?? '' })} />
                <Tool icon={deleteIcon} tooltip={trans.__('Delete')} className="bodhi-DeleteAlias bodhi-mod-danger" onClick={() => void remove(a)} />
              </>
            )}
          </div>
          <ErrorLine error={loader.errors[a.name] || null} />
        </div>
      ))}
    </div>
  );
}

export interface INotice {
  text: string;
  error: boolean;
}

interface IImportResult {
  created: string[];
  updated: string[];
  skipped: { name: string; reason: string }[];
}

/** What an import did, in one line. */
export function importSummary(r: IImportResult, trans: ISectionProps['trans']): string {
  const parts = [trans.__('%1 created', r.created.length), trans.__('%1 updated', r.updated.length)];
  if (r.skipped.length) {
    parts.push(trans.__('%1 skipped (%2)', r.skipped.length, r.skipped.map(x => `${x.name}: ${x.reason}`).join('; ')));
  }
  return trans.__('Imported: %1', parts.join(', '));
}

export function AliasesTools(props: ISectionProps & { onReload: () => void; onNew: () => void; onNotice: (n: INotice | null) => void }): JSX.Element {
  const { api, trans } = props;
  const picker = React.useRef<HTMLInputElement>(null);
  const fail = (e: unknown) => props.onNotice({ text: errorText(e, trans), error: true });
  const importFile = async (file: File) => {
    props.onNotice(null);
    try {
      const json = /\.json$/i.test(file.name);
      const resp = await api.fetch('app/aliases/import', {
        method: 'POST',
        body: await file.text(),
        headers: { 'Content-Type': json ? 'application/json' : 'application/yaml' }
      });
      props.onNotice({ text: importSummary((await resp.json()) as IImportResult, trans), error: false });
      props.onReload();
      await props.modelsChanged();
    } catch (e) {
      fail(e);
    }
  };
  return (
    <>
      {may(props.user, 'admin') && (
        <>
          <Tool icon={addIcon} tooltip={trans.__('New alias')} className="bodhi-NewAlias" onClick={props.onNew} />
          <Tool icon={fileUploadIcon} tooltip={trans.__('Import aliases (YAML or JSON)')} className="bodhi-ImportAliases" onClick={() => picker.current?.click()} />
          <input
            ref={picker}
            type="file"
            accept=".yaml,.yml,.json"
            className="bodhi-ImportFile"
            hidden
            onChange={e => {
              const f = e.target.files?.[0];
              e.target.value = '';
              if (f) {
                void importFile(f);
              }
            }}
          />
        </>
      )}
      <Tool
        icon={downloadIcon}
        tooltip={trans.__('Export the aliases as YAML')}
        className="bodhi-ExportAliases"
        onClick={() =>
          void api
            .download('app/aliases/export', 'aliases.yaml')
            .then(() => props.onNotice(null))
            .catch(fail)
        }
      />
      <Tool icon={refreshIcon} tooltip={trans.__('Refresh the aliases')} className="bodhi-RefreshAliases" onClick={props.onReload} />
    </>
  );
}

function FlagField(props: {
  row: IFlagRow;
  index: number;
  allowed: IFlagOption[];
  refused: boolean;
  trans: ISectionProps['trans'];
  onChange: (r: IFlagRow) => void;
  onRemove: () => void;
}): JSX.Element {
  const { row, allowed, trans } = props;
  const known = allowed.find(f => f.flag === row.flag.trim());
  const takesValue = known ? known.value !== null : true;
  return (
    <div className={`bodhi-FlagRow ${props.refused ? 'bodhi-mod-refused' : ''}`} data-flag={row.flag}>
      <div className="bodhi-Row">
        <input
          className="jp-mod-styled bodhi-FlagName"
          list="bodhi-allowed-flags"
          value={row.flag}
          placeholder={trans.__('--flag')}
          aria-label={trans.__('llama-server flag')}
          aria-invalid={props.refused}
          onChange={e => props.onChange({ ...row, flag: e.target.value })}
        />
        {takesValue && (
          <input
            className="jp-mod-styled bodhi-FlagValue"
            type={known?.value === 'int' || known?.value === 'float' ? 'number' : 'text'}
            step={known?.value === 'float' ? 'any' : '1'}
            value={row.value}
            placeholder={known?.value ?? trans.__('value')}
            aria-label={trans.__('value of %1', row.flag)}
            onChange={e => props.onChange({ ...row, value: e.target.value })}
          />
        )}
        <Tool icon={closeIcon} tooltip={trans.__('Remove this flag')} className="bodhi-RemoveFlag" onClick={props.onRemove} />
      </div>
      {known?.help && <small className="bodhi-Hint">{known.help}</small>}
    </div>
  );
}

function AliasForm(props: ISectionProps & { alias: IAlias | null; model: string; options: IAliasOptions | null; onClose: (saved: boolean) => void }): JSX.Element {
  const { api, trans, alias, options } = props;
  const [d, setD] = React.useState<IDraft>(() => draftOf(alias, props.model));
  const [error, setError] = React.useState<{ text: string; param: string | null } | null>(null);
  const [saving, setSaving] = React.useState(false);
  // open where the alias has some, so nothing set is hidden
  const [openRequest] = React.useState(() => Object.values(d.request).some(v => v !== ''));
  const files = fileModels(props.models);
  const flags = options?.flags ?? [];
  // the typed options the server knows (all of ours while it has not said)
  const serverKeys = Object.keys(SERVER_FIELDS).filter(k => !options?.server_options?.length || options.server_options.includes(k));

  const save = async () => {
    setSaving(true);
    try {
      if (alias) {
        await api.json(`app/aliases/${encodeURIComponent(alias.name)}`, 'PUT', aliasBody(d));
      } else {
        await api.json('app/aliases', 'POST', aliasBody(d));
      }
      setSaving(false);
      props.onClose(true);
    } catch (e) {
      setSaving(false);
      setError({ text: errorText(e, trans), param: e instanceof ApiError ? e.param : null });
    }
  };
  const refusedFlag = (r: IFlagRow) =>
    !!error && !!r.flag.trim() && ((error.param ?? '').includes(r.flag.trim()) || error.text.includes(`'${r.flag.trim()}'`) || error.text.includes(`"${r.flag.trim()}"`));
  const setFlags = (rows: IFlagRow[]) => setD({ ...d, flags: rows });

  return (
    <form
      className="bodhi-Form bodhi-AliasForm"
      onSubmit={e => {
        e.preventDefault();
        void save();
      }}
    >
      <div className="bodhi-FormHead">{alias ? trans.__('Edit alias %1', alias.name) : trans.__('New alias')}</div>
      <Field label={trans.__('Name')}>
        <input className="jp-mod-styled bodhi-AliasName" value={d.name} required disabled={!!alias} maxLength={128} onChange={e => setD({ ...d, name: e.target.value })} />
      </Field>
      <Field label={trans.__('Serves')}>
        <HTMLSelect className="bodhi-AliasKind" value={d.router ? 'router' : 'model'} onChange={e => setD({ ...d, router: e.target.value === 'router' })}>
          <option value="model">{trans.__('a model file')}</option>
          <option value="router">{trans.__('a router: the first target that answers')}</option>
        </HTMLSelect>
      </Field>
      {d.router ? (
        <Field label={trans.__('Targets (model names, one per line, in order)')}>
          <textarea className="jp-mod-styled bodhi-AliasTargets" rows={3} value={d.targets} onChange={e => setD({ ...d, targets: e.target.value })} />
        </Field>
      ) : (
        <Field label={trans.__('Model')}>
          <HTMLSelect className="bodhi-AliasModel" value={d.model} onChange={e => setD({ ...d, model: e.target.value })}>
            {d.model && !files.some(f => f.id === d.model) && <option value={d.model}>{d.model}</option>}
            {files.map(f => (
              <option key={f.id} value={f.id}>
                {f.id}
              </option>
            ))}
          </HTMLSelect>
        </Field>
      )}
      <details className="bodhi-Fieldset bodhi-RequestDefaults" open={openRequest}>
        <summary>{trans.__('Request defaults (where a request leaves them out)')}</summary>
        <div className="bodhi-Grid">
          {REQUEST_FIELDS.map(f => (
            <Field key={f.key} label={trans.__(f.label)} className={f.kind === 'text' || f.kind === 'list' ? 'bodhi-mod-wide' : ''}>
              {f.kind === 'text' || f.kind === 'list' ? (
                <textarea className="jp-mod-styled" data-field={f.key} rows={2} value={d.request[f.key]} onChange={e => setD({ ...d, request: { ...d.request, [f.key]: e.target.value } })} />
              ) : (
                <input
                  className="jp-mod-styled"
                  data-field={f.key}
                  type="number"
                  step={f.kind === 'float' ? 'any' : '1'}
                  value={d.request[f.key]}
                  onChange={e => setD({ ...d, request: { ...d.request, [f.key]: e.target.value } })}
                />
              )}
            </Field>
          ))}
        </div>
      </details>
      {!d.router && (
        <details className="bodhi-Fieldset bodhi-EngineOptions" open>
          <summary>{trans.__('Engine options')}</summary>
          <div className="bodhi-Grid">
            {serverKeys.map(k => {
              const f = SERVER_FIELDS[k];
              const set = (v: string) => setD({ ...d, server: { ...d.server, [k]: v } });
              return (
                <Field key={k} label={trans.__(f.label)} hint={f.hint ? trans.__(f.hint) : undefined} className={f.kind === 'str' && !f.choices ? 'bodhi-mod-wide' : ''}>
                  {f.choices ? (
                    <HTMLSelect className="bodhi-ServerOption" data-field={k} value={d.server[k]} onChange={e => set(e.target.value)}>
                      {f.choices.map(c => (
                        <option key={c} value={c}>
                          {c || trans.__('(default)')}
                        </option>
                      ))}
                    </HTMLSelect>
                  ) : (
                    <input className="jp-mod-styled bodhi-ServerOption" data-field={k} type={f.kind === 'int' ? 'number' : 'text'} value={d.server[k]} onChange={e => set(e.target.value)} />
                  )}
                </Field>
              );
            })}
          </div>
          <div className="bodhi-Param bodhi-Flags">
            <span>{trans.__('Extra llama-server flags (from the allowed list)')}</span>
            <datalist id="bodhi-allowed-flags">
              {flags.map(f => (
                <option key={f.flag} value={f.flag}>
                  {f.help}
                </option>
              ))}
            </datalist>
            {d.flags.map((r, i) => (
              <FlagField
                key={i}
                row={r}
                index={i}
                allowed={flags}
                refused={refusedFlag(r)}
                trans={trans}
                onChange={row => setFlags(d.flags.map((x, j) => (j === i ? row : x)))}
                onRemove={() => setFlags(d.flags.filter((_, j) => j !== i))}
              />
            ))}
            <div>
              <Tool icon={addIcon} label={trans.__('Add flag')} tooltip={trans.__('Add a llama-server flag')} className="bodhi-AddFlag" onClick={() => setFlags([...d.flags, { flag: '', value: '' }])} />
            </div>
          </div>
        </details>
      )}
      <ErrorLine error={error?.text ?? null} className="bodhi-FormError" />
      <div className="bodhi-Actions">
        <TextButton onClick={() => props.onClose(false)}>{trans.__('Cancel')}</TextButton>
        <TextButton kind="accept" type="submit" className="bodhi-SaveAlias" disabled={saving || !d.name.trim() || (!d.router && !d.model)}>
          {alias ? trans.__('Save') : trans.__('Create')}
        </TextButton>
      </div>
    </form>
  );
}
