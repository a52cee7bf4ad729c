/**
 * The bodhi-jupyter JupyterLab plugin. This module stays small: it registers the sidebar
 * entry, commands and settings, and loads the chat panel itself (`panel.tsx`) only when the
 * sidebar is first shown, so JupyterLab's start pays for little more than an icon.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStateDB } from '@jupyterlab/statedb';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';
import { Panel } from '@lumino/widgets';

import { completionPlugin } from './completion';
import type { IChatPanel, IPanelOptions } from './panel';

/** What the shell needs to build the panel; the heavy services are looked up then. */
type IShellOptions = Omit<IPanelOptions, 'rendermime' | 'notebooks'>;

const PLUGIN_ID = 'bodhi-jupyter:plugin';
const OPENED_KEY = 'bodhi-jupyter:opened-once';

export const chatIcon = new LabIcon({
  name: 'bodhi:chat',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">' +
    '<path class="jp-icon3" fill="#616161" d="M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 ' +
    '4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 ' +
    '1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z"/></svg>'
});

export const CommandIds = {
  open: 'bodhi:open-chat',
  explainCell: 'bodhi:explain-cell',
  fixError: 'bodhi:fix-error',
  sendSelection: 'bodhi:send-selection'
};

/** The sidebar entry: an empty box until it is first shown, then the real panel. */
class LazyChatShell extends Panel {
  constructor(private readonly options: IShellOptions) {
    super();
    this.id = 'bodhi-chat';
    this.addClass('bodhi-Shell');
    this.title.icon = chatIcon;
    this.title.caption = options.trans.__('Chat with local models');
  }

  /** The panel, loading its code on first use. */
  async panel(): Promise<IChatPanel> {
    if (!this._panel) {
      // rendermime and the notebook tracker are resolved here, on first use, so that
      // JupyterLab's start does not have to activate them for us
      const app = this.options.app;
      this._panel = Promise.all([
        import('./panel'),
        app.resolveRequiredService(IRenderMimeRegistry),
        app.resolveOptionalService(INotebookTracker)
      ]).then(([mod, rendermime, notebooks]) => {
        const panel = mod.createChatPanel({ ...this.options, rendermime, notebooks });
        this.addWidget(panel.widget);
        return panel;
      });
    }
    return this._panel;
  }

  protected onAfterShow(): void {
    void this.panel();
  }

  private _panel: Promise<IChatPanel> | null = null;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Chat with local LLMs and manage API tokens in the sidebar.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, ISettingRegistry, ITranslator, IStateDB],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    translator: ITranslator | null,
    state: IStateDB | null
  ) => {
    const trans = (translator ?? nullTranslator).load('bodhi_jupyter');
    const settings = settingRegistry
      ? settingRegistry.load(PLUGIN_ID).catch(reason => {
          console.warn('bodhi-jupyter: settings not loaded', reason);
          return null;
        })
      : Promise.resolve(null);
    const shell = new LazyChatShell({ app, trans, settings });
    // the notebook tracker, once the panel has looked it up (commands enable on it)
    let notebooks: INotebookTracker | null = null;
    app.shell.add(shell, 'left', { rank: 150 });
    if (restorer) {
      restorer.add(shell, 'bodhi-chat');
    }
    const open = async () => {
      app.shell.activateById(shell.id);
      const panel = await shell.panel();
      notebooks = panel.notebooks;
      return panel;
    };
    const hasCell = () =>
      notebooks ? !!notebooks.activeCell : app.shell.currentWidget?.hasClass('jp-NotebookPanel') ?? false;

    app.commands.addCommand(CommandIds.open, {
      label: trans.__('Open Local Model Chat'),
      caption: trans.__('Show the chat panel in the left sidebar'),
      icon: chatIcon,
      execute: () => open()
    });
    const cellCommand = (kind: 'explain' | 'fix') => ({
      label:
        kind === 'explain'
          ? trans.__('Explain This Cell')
          : trans.__('Fix This Error'),
      caption:
        kind === 'explain'
          ? trans.__('Start a chat about the active cell')
          : trans.__("Start a chat with the active cell's error"),
      isEnabled: hasCell,
      execute: async () => {
        const panel = await open();
        await panel.askAboutCell(kind);
      }
    });
    app.commands.addCommand(CommandIds.explainCell, cellCommand('explain'));
    app.commands.addCommand(CommandIds.fixError, cellCommand('fix'));
    app.commands.addCommand(CommandIds.sendSelection, {
      label: trans.__('Send Selection to Chat'),
      isEnabled: hasCell,
      execute: async () => {
        const panel = await open();
        await panel.sendSelection();
      }
    });
    if (palette) {
      const category = trans.__('Local Models');
      for (const command of Object.values(CommandIds)) {
        palette.addItem({ command, category });
      }
    }
    app.contextMenu.addItem({
      command: CommandIds.explainCell,
      selector: '.jp-Notebook .jp-Cell',
      rank: 20
    });
    app.contextMenu.addItem({
      command: CommandIds.fixError,
      selector: '.jp-Notebook .jp-CodeCell',
      rank: 21
    });
    app.contextMenu.addItem({
      command: CommandIds.sendSelection,
      selector: '.jp-Notebook .jp-Cell .jp-Editor',
      rank: 22
    });

    // First start in a workspace: show the panel, so nobody has to find it.
    void Promise.all([app.restored, settings]).then(async ([, s]) => {
      const wanted = s ? (s.get('openOnFirstStart').composite as boolean) : true;
      const seen = state ? await state.fetch(OPENED_KEY) : null;
      if (wanted && !seen) {
        app.shell.activateById(shell.id);
        await state?.save(OPENED_KEY, true);
      }
    });
  }
};

export default [plugin, completionPlugin];
