/**
 * The shapes the Models view reads and writes (CONTRACTS.md of issue 8): model files with
 * their metadata, engine processes, aliases and their allowed options, remote upstreams,
 * and pulls from the Hugging Face hub.
 */
import { IModelInfo, IProcessInfo } from '../api';

export interface IModelFile extends IModelInfo {
  architecture?: string | null;
  parameter_count?: number | null;
  quantization?: string | null;
  file_size?: number | null;
  context_length?: number | null;
  embedding_length?: number | null;
  chat_template?: boolean | null;
  capabilities?: string[] | null;
}

export interface IProcess extends IProcessInfo {
  owner: string;
  pid: number | null;
  port: number | null;
  started_at: string | null;
  last_used_at: string | null;
  memory_bytes: number | null;
}

export interface IAliasServer {
  ctx_size?: number | null;
  parallel?: number | null;
  gpu_layers?: number | null;
  pooling?: string | null;
  chat_template?: string | null;
  chat_template_file?: string | null;
  mmproj?: string | null;
  extra_args?: string[] | null;
  [key: string]: unknown;
}

export interface IAlias {
  name: string;
  model: string | null;
  request: Record<string, unknown>;
  server: IAliasServer;
  source: 'config' | 'api';
  targets: string[] | null;
}

export interface IFlagOption {
  flag: string;
  value: 'int' | 'float' | 'str' | null;
  help: string;
}

export interface IAliasOptions {
  flags: IFlagOption[];
  server_options: string[];
}

export interface IUpstream {
  name: string;
  base_url: string;
  models: string[] | null;
  prefix: string | null;
  has_api_key: boolean;
  created_at: string | null;
  updated_at: string | null;
}

export type PullState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface IPull {
  id: string;
  repo: string;
  filename: string;
  revision: string | null;
  state: PullState;
  bytes_done: number;
  bytes_total: number | null;
  speed: number | null;
  eta_s: number | null;
  files: string[];
  model_id: string | null;
  error: { message: string; type?: string; code?: string } | null;
  created_at: string;
  updated_at: string;
}

/** Models served by an engine on this machine (not a remote upstream, not a router). */
export function isLocal(m: IModelInfo): boolean {
  return m.source !== 'remote' && m.source !== 'router';
}
