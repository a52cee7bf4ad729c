/**
 * The ghost-text settings (in the plugin's schema, `schema/plugin.json`), read with their
 * defaults so that a missing or older settings file still gives a working provider.
 */
import type { ISettingRegistry } from '@jupyterlab/settingregistry';

export interface ICompletionSettings {
  enabled: boolean;
  /** model id or alias; empty: no ghost text */
  model: string;
  debounceMs: number;
  maxNotebookChars: number;
  maxTokens: number;
  contextChars: number;
}

/** The alias `make run` configures: the demo model with an engine of its own. */
export const DEFAULT_COMPLETION_MODEL = 'smollm2-135m-complete';

export const DEFAULTS: ICompletionSettings = {
  enabled: true,
  model: DEFAULT_COMPLETION_MODEL,
  debounceMs: 300,
  maxNotebookChars: 200_000,
  maxTokens: 32,
  contextChars: 2000
};

function pick<T>(settings: ISettingRegistry.ISettings, key: string, fallback: T): T {
  const value = settings.get(key).composite;
  return value === undefined || value === null || typeof value !== typeof fallback
    ? fallback
    : (value as T);
}

export function readSettings(settings: ISettingRegistry.ISettings | null): ICompletionSettings {
  if (!settings) {
    return { ...DEFAULTS };
  }
  return {
    enabled: pick(settings, 'completionEnabled', DEFAULTS.enabled),
    model: pick(settings, 'completionModel', DEFAULTS.model).trim(),
    debounceMs: Math.max(0, pick(settings, 'completionDebounceMs', DEFAULTS.debounceMs)),
    maxNotebookChars: pick(settings, 'completionMaxNotebookChars', DEFAULTS.maxNotebookChars),
    maxTokens: Math.max(1, pick(settings, 'completionMaxTokens', DEFAULTS.maxTokens)),
    contextChars: Math.max(0, pick(settings, 'completionContextChars', DEFAULTS.contextChars))
  };
}
