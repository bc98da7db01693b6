/**
 * The demo's narration: colour (TTY only), secrets masked in every printed line, numbered
 * steps with their durations, the cleanup registry, and short printable forms of espm's
 * answers and log lines. Nothing here talks to espm.
 *
 * @packageDocumentation
 */

const colour = process.stdout.isTTY === true && process.env['NO_COLOR'] === undefined;
const paint =
  (code: string) =>
  (text: string): string =>
    colour ? `\x1b[${code}m${text}\x1b[0m` : text;
/** ANSI styles (no-ops without a TTY or with NO_COLOR). */
export const style = {
  bold: paint('1'),
  dim: paint('2'),
  red: paint('31'),
  green: paint('32'),
  yellow: paint('33'),
  blue: paint('34'),
  magenta: paint('35'),
  cyan: paint('36'),
};

/** Secrets registered so far (the PSK): replaced by their masked form in every printed line. */
const secrets: string[] = [];

/** Registers a secret (the PSK): every printed line shows it masked from now on. */
export function addSecret(secret: string): void {
  secrets.push(secret);
}

/** `AbCd********…`: the first 4 characters, the rest as asterisks. */
export function mask(secret: string): string {
  return secret.slice(0, 4) + '*'.repeat(Math.max(0, secret.length - 4));
}

/** Replaces every registered secret and every PEM private key in `text`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join(mask(secret));
  return out.replace(
    /-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----[\s\S]*?-----END \1-----\n?/g,
    (pem, kind: string) => `-----BEGIN ${kind}----- (${Buffer.byteLength(pem)} bytes, not shown)`,
  );
}

/** Set once interrupted: the story stops narrating, only the cleanup speaks. */
let silenced = false;

/** Stops all narration but what is said with `always` (after an interruption). */
export function silence(): void {
  silenced = true;
}

/** Prints lines (each indented by `indent` spaces), secrets masked; nothing once silenced unless `always`. */
export function say(text = '', indent = 0, always = false): void {
  if (silenced && !always) return;
  const pad = ' '.repeat(indent);
  process.stdout.write(`${redact(text).split('\n').map((line) => (line === '' ? line : pad + line)).join('\n')}\n`);
}

/** `850 ms`, `12.3 s`. */
export function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** Step durations, for the summary. */
export const timings: Array<[string, number]> = [];

/** Runs one numbered step: a heading, the body, its duration. */
export async function step<T>(id: string, title: string, body: () => Promise<T>): Promise<T> {
  const heading = `${id}. ${title} `;
  say(`\n${style.bold(style.blue(`── ${heading}${'─'.repeat(Math.max(4, 76 - heading.length))}`))}`);
  const started = Date.now();
  try {
    return await body();
  } finally {
    const ms = Date.now() - started;
    timings.push([`${id}. ${title}`, ms]);
    say(style.dim(`   step ${id} took ${seconds(ms)}`));
  }
}

/** Runs one action inside a step: `• label … result [time]`. */
export async function action<T>(label: string, body: () => Promise<T>, describe?: (result: T) => string): Promise<T> {
  const started = Date.now();
  const result = await body();
  const detail = describe === undefined ? '' : `: ${describe(result)}`;
  say(`${style.green('•')} ${label}${detail} ${style.dim(`[${seconds(Date.now() - started)}]`)}`, 2);
  return result;
}

/** A dim explanatory line under an action. */
export function note(text: string): void {
  say(style.dim(text), 4);
}

// ---------------------------------------------------------------------------------------------
// cleanup: every child process and the work directory, on success, failure or signal

/** What has to be undone, newest last. */
export const cleanups: Array<{ what: string; run: () => Promise<void> }> = [];
let cleaning: Promise<void> | undefined;

/** Runs every registered cleanup once, newest first; never rejects. */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const { what, run } of cleanups.reverse()) {
      try {
        await run();
      } catch (err) {
        say(style.yellow(`cleanup: ${what}: ${(err as Error).message}`), 2, true);
      }
    }
  })();
  return cleaning;
}

/** Single-quotes a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A short, printable form of an answer body: PEMs as one line, never a private key or a challenge password. */
export function shortForm(value: unknown, key?: string): unknown {
  if (typeof value === 'string' && (key === 'challenge_password' || key === 'csr_attributes')) {
    return key === 'challenge_password' ? mask(value) : `(${Buffer.byteLength(value)} bytes of YAML, challenge inside: shown below, masked)`;
  }
  if (typeof value === 'string') {
    const pem = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(value);
    const secret = key === 'private_key' || (pem?.[1] ?? '').includes('PRIVATE KEY');
    const bytes = Buffer.byteLength(value);
    if (pem !== null) {
      const count = value.split(`-----BEGIN ${pem[1]}-----`).length - 1;
      const what = count > 1 ? `${count} PEM blocks, ${bytes} bytes` : `${bytes} bytes`;
      return `-----BEGIN ${pem[1]}----- … (${what}${secret ? ', not shown' : ''})`;
    }
    if (secret) return `(${bytes} bytes, not shown)`;
    return value.length > 100 ? `${value.slice(0, 99)}…` : value;
  }
  if (Array.isArray(value)) {
    const shown = value.slice(0, 12).map((v) => shortForm(v));
    return value.length > 12 ? [...shown, `… ${value.length - 12} more`] : shown;
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, shortForm(v, k)]));
  }
  return value;
}

/** A body for the narration: one line when short, else one line per top-level key. */
export function printable(body: Record<string, unknown>): string {
  const short = shortForm(body) as Record<string, unknown>;
  const compact = JSON.stringify(short);
  if (compact.length <= 150) return compact;
  const entries = Object.entries(short).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return `{\n${entries.join(',\n')}\n}`;
}

/** One JSON log line of espm, for a person: `[warn] message key=value …`. */
export function espmLogLine(line: string): string {
  try {
    const record = JSON.parse(line) as Record<string, unknown>;
    const levels: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
    const level = levels[Number(record['level'])] ?? String(record['level']);
    if (record['msg'] === 'request' || record['msg'] === 'request failed') {
      const text = `[${level}] ${String(record['method'])} ${String(record['path'])} → ${String(record['status'])} (${String(record['ms'])} ms, from ${String(record['remote'])})`;
      return level === 'info' ? style.dim(text) : style.yellow(text);
    }
    const extra = Object.entries(record)
      .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    const text = `[${level}] ${String(record['msg'] ?? '')}${extra === '' ? '' : ` ${extra}`}`;
    return level === 'warn' || level === 'error' || level === 'fatal' ? style.yellow(text) : style.dim(text);
  } catch {
    return style.dim(line);
  }
}
