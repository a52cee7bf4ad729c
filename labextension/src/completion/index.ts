/**
 * The ghost-text plugin: registers the inline completion provider when JupyterLab has a
 * completion manager (it is optional: without one this plugin does nothing).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICompletionProviderManager } from '@jupyterlab/completer';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';

import { BodhiInlineProvider, PROVIDER_ID } from './provider';
import { ICompletionSettings, readSettings } from './settings';

export const completionPlugin: JupyterFrontEndPlugin<void> = {
  id: PROVIDER_ID,
  description: 'Ghost-text completion in notebook code cells from a local model.',
  autoStart: true,
  optional: [ICompletionProviderManager, ISettingRegistry, ITranslator],
  activate: (
    _app: JupyterFrontEnd,
    manager: ICompletionProviderManager | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null
  ) => {
    if (!manager) {
      return;
    }
    let current: ICompletionSettings = readSettings(null);
    if (settingRegistry) {
      void settingRegistry
        .load('bodhi-jupyter:plugin')
        .then(s => {
          current = readSettings(s);
          s.changed.connect(() => (current = readSettings(s)));
        })
        .catch(reason => console.warn('bodhi-jupyter: completion settings not loaded', reason));
    }
    const trans = (translator ?? nullTranslator).load('bodhi_jupyter');
    // registered during activation, before JupyterLab has restored: the inline completer
    // then lists it with the defaults of its schema (enabled)
    manager.registerInlineProvider(new BodhiInlineProvider(() => current, trans));
  }
};
