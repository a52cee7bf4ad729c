/**
 * The panel's Models view: loaded engines, model files, aliases, remote upstreams and
 * pulls from the hub, each a collapsible section with its own tools. The view keeps the
 * models and the engine processes (polled while shown) that several sections read.
 */
import { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import { BodhiClient, IPage, IUser } from '../api';
import { AliasesBody, AliasesTools, INotice } from './aliases';
import { ISectionProps, Section, errorText, usePoll } from './common';
import { FilesBody, FilesTools, fileModels } from './files';
import { ProcessesBody, ProcessesTools } from './processes';
import { PullsBody, PullsTools } from './pulls';
import { IModelFile, IProcess } from './types';
import { UpstreamsBody, UpstreamsTools } from './upstreams';

import '../../style/models.css';

type SectionId = 'processes' | 'files' | 'aliases' | 'upstreams' | 'pulls';

export function ModelsView(props: { api: BodhiClient; trans: TranslationBundle; user: IUser | null; onModelsChanged: () => void }): JSX.Element {
  const { api, trans } = props;
  const [models, setModels] = React.useState<IModelFile[]>([]);
  const [processes, setProcesses] = React.useState<IProcess[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  const [open, setOpen] = React.useState<Record<SectionId, boolean>>({ processes: true, files: true, aliases: true, upstreams: true, pulls: true });
  const [reload, setReload] = React.useState<Record<string, number>>({});
  const [aliasFor, setAliasFor] = React.useState<string | null>(null);
  const [aliasNotice, setAliasNotice] = React.useState<INotice | null>(null);

  const loadModels = async () => {
    try {
      setModels((await api.json<IPage<IModelFile>>('app/models?page_size=200')).data);
      setError(null);
    } catch (e) {
      setError(errorText(e, trans));
    }
  };
  const loadProcesses = async () => {
    try {
      setProcesses((await api.json<IPage<IProcess>>('app/processes?page_size=200')).data);
    } catch (e) {
      setError(errorText(e, trans));
    }
  };
  React.useEffect(() => void loadModels(), []);
  const starting = processes.some(p => p.state === 'starting' || p.state === 'stopping');
  usePoll(() => void loadProcesses(), starting ? 1000 : 3000);

  const section: ISectionProps = {
    api,
    trans,
    user: props.user,
    models,
    processes,
    modelsChanged: async () => {
      await loadModels();
      props.onModelsChanged();
    },
    processesChanged: loadProcesses
  };
  const bump = (id: string) => setReload(r => ({ ...r, [id]: (r[id] ?? 0) + 1 }));
  const toggle = (id: SectionId) => setOpen(o => ({ ...o, [id]: !o[id] }));

  return (
    <div className="bodhi-Models">
      {error && (
        <div className="bodhi-Error" role="alert">
          {error}
        </div>
      )}
      <Section id="processes" title={trans.__('Loaded')} count={processes.length} open={open.processes} onToggle={() => toggle('processes')} tools={<ProcessesTools {...section} />}>
        <ProcessesBody {...section} />
      </Section>
      <Section id="files" title={trans.__('Files')} count={fileModels(models).length} open={open.files} onToggle={() => toggle('files')} tools={<FilesTools {...section} />}>
        <FilesBody
          {...section}
          onAlias={model => {
            setAliasFor(model);
            setOpen(o => ({ ...o, aliases: true }));
          }}
        />
      </Section>
      <Section id="aliases" title={trans.__('Aliases')} open={open.aliases} onToggle={() => toggle('aliases')} tools={<AliasesTools {...section} onReload={() => bump('aliases')} onNew={() => setAliasFor('')} onNotice={setAliasNotice} />}>
        <AliasesBody {...section} draftModel={aliasFor} onDraftTaken={() => setAliasFor(null)} reloadKey={reload.aliases ?? 0} notice={aliasNotice} />
      </Section>
      <Section id="upstreams" title={trans.__('Remote upstreams')} open={open.upstreams} onToggle={() => toggle('upstreams')} tools={<UpstreamsTools {...section} onReload={() => bump('upstreams')} onNew={() => bump('newUpstream')} />}>
        <UpstreamsBody {...section} reloadKey={reload.upstreams ?? 0} newKey={reload.newUpstream ?? 0} />
      </Section>
      <Section id="pulls" title={trans.__('Pulls from the hub')} open={open.pulls} onToggle={() => toggle('pulls')} tools={<PullsTools {...section} onReload={() => bump('pulls')} />}>
        <PullsBody {...section} reloadKey={reload.pulls ?? 0} />
      </Section>
    </div>
  );
}
