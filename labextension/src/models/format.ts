/**
 * Pure helpers of the Models view (no JupyterLab imports, unit-tested with node): sizes,
 * speeds and times as a sidebar shows them, a pull's progress, and the llama-server flags
 * of an alias as editable rows and back.
 */

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** Bytes in decimal units (as the hub and file managers show sizes): "98.2 MB". */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n) || n < 0) {
    return '—';
  }
  let i = 0;
  let v = n;
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[i]}`;
}

/** A transfer speed: "4.2 MB/s"; empty when unknown. */
export function formatSpeed(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !(bytesPerSecond >= 0)) {
    return '';
  }
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** Time left, as a person reads it: "45 s", "3 min 20 s", "1 h 5 min"; empty when unknown. */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  const s = Math.ceil(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const r = s % 60;
    return r ? `${Math.floor(s / 60)} min ${r} s` : `${s / 60} min`;
  }
  const m = Math.floor((s % 3600) / 60);
  return m ? `${Math.floor(s / 3600)} h ${m} min` : `${Math.floor(s / 3600)} h`;
}

/** A parameter count as model cards write it: "135M", "1.5B", "7B". */
export function formatParams(n: number | null | undefined): string {
  if (!n || n <= 0) {
    return '';
  }
  const [div, unit] = n >= 1e12 ? [1e12, 'T'] : n >= 1e9 ? [1e9, 'B'] : n >= 1e6 ? [1e6, 'M'] : [1e3, 'K'];
  const v = n / div;
  return `${v < 10 ? Number(v.toFixed(1)) : Math.round(v)}${unit}`;
}

/** A context length in tokens: "8192" → "8K", "32768" → "32K", "2000" → "2000". */
export function formatTokens(n: number | null | undefined): string {
  if (!n || n <= 0) {
    return '';
  }
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024}K` : String(n);
}

/** The part of a pull that is done, 0..1, or null while the total is not known. */
export function pullFraction(done: number, total: number | null | undefined): number | null {
  if (!total || total <= 0) {
    return null;
  }
  return Math.min(1, Math.max(0, done / total));
}

export interface IPullLike {
  state: string;
  bytes_done: number;
  bytes_total: number | null;
  speed: number | null;
  eta_s: number | null;
}

type Trans = { __: (s: string, ...args: any[]) => string };

/** No translation: the English text with its %1, %2 ... filled in. */
export const plainTrans: Trans = {
  __: (s: string, ...args: any[]) => s.replace(/%(\d+)/g, (m, i) => String(args[Number(i) - 1] ?? m))
};

/** One line under a pull's bar: "12 MB of 98 MB · 4.2 MB/s · 20 s left". */
export function pullSummary(p: IPullLike, trans: Trans = plainTrans): string {
  const parts = [p.bytes_total ? trans.__('%1 of %2', formatBytes(p.bytes_done), formatBytes(p.bytes_total)) : formatBytes(p.bytes_done)];
  if (p.state === 'running') {
    const speed = formatSpeed(p.speed);
    const eta = formatEta(p.eta_s);
    if (speed) {
      parts.push(speed);
    }
    if (eta) {
      parts.push(trans.__('%1 left', eta));
    }
  }
  return parts.join(' · ');
}

/** One llama-server flag of an alias, with its value ('' for a switch). */
export interface IFlagRow {
  flag: string;
  value: string;
}

/** An alias's `extra_args` (argv tokens: "--flag", "value" or "--flag=value") as rows. */
export function flagRows(args: readonly string[] | null | undefined): IFlagRow[] {
  const rows: IFlagRow[] = [];
  for (const a of args ?? []) {
    const isFlag = /^-/.test(a) && !/^-\d/.test(a);
    if (isFlag) {
      const eq = a.indexOf('=');
      rows.push(eq > 0 ? { flag: a.slice(0, eq), value: a.slice(eq + 1) } : { flag: a, value: '' });
    } else if (rows.length && rows[rows.length - 1].value === '') {
      rows[rows.length - 1].value = a;
    } else {
      rows.push({ flag: a, value: '' });
    }
  }
  return rows;
}

/** Rows back to argv tokens, skipping empty rows: [{--top-k, 40}] → ["--top-k", "40"]. */
export function flagArgs(rows: readonly IFlagRow[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    const flag = r.flag.trim();
    if (!flag) {
      continue;
    }
    out.push(flag);
    if (r.value.trim() !== '') {
      out.push(r.value.trim());
    }
  }
  return out;
}

/** A typed form value: '' is "not set" (null), numbers parse, anything else stays text. */
export function typedValue(raw: string, kind: 'int' | 'float' | 'str'): number | string | null {
  const t = raw.trim();
  if (t === '') {
    return null;
  }
  if (kind === 'int') {
    return /^-?\d+$/.test(t) ? parseInt(t, 10) : t;
  }
  if (kind === 'float') {
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  }
  return raw;
}
