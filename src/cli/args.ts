import { parseArgs } from 'node:util';
import { closest, plural } from '../format.js';

/**
 * The command line, declared once per command as data: the parser, each
 * command's --help and the overview are all made from these entries.
 */

export interface FlagSpec {
  readonly type: 'boolean' | 'string';
  readonly short?: string;
  /** The value's name in usage lines (string flags), e.g. FILE. */
  readonly value?: string;
  readonly help: string;
  /** The command cannot run without it (shown without brackets, checked before it runs). */
  readonly required?: boolean;
}

export interface CommandSpec<Ctx> {
  /** One word, or two for a subcommand ("keys export"). */
  readonly name: string;
  /** One line for the overview. */
  readonly summary: string;
  /** Positional arguments as shown in usage, e.g. "[ID]". */
  readonly args?: string;
  /** How many positional arguments it takes (default 0). */
  readonly maxArgs?: number;
  readonly flags?: Readonly<Record<string, FlagSpec>>;
  /** Further lines for `<command> --help`. */
  readonly details?: string;
  readonly run: (ctx: Ctx) => Promise<number>;
}

/** Flags every command takes. */
export const GLOBAL_FLAGS: Readonly<Record<string, FlagSpec>> = {
  config: { type: 'string', value: 'FILE', help: 'configuration file (or MAAS_MIRROR_CONFIG); default config/maas-mirror.yaml' },
  help: { type: 'boolean', short: 'h', help: 'this command\'s usage' },
  version: { type: 'boolean', help: 'print the version' },
};

export type ParsedLine<Ctx> =
  | { readonly kind: 'run'; readonly command: CommandSpec<Ctx>; readonly options: Record<string, string | boolean | undefined>; readonly args: string[] }
  | { readonly kind: 'help'; readonly text: string }
  | { readonly kind: 'version' }
  /** `help` is short: the usage line(s) and where to read more. */
  | { readonly kind: 'usage-error'; readonly message: string; readonly help: string };

const flagLabel = (name: string, f: FlagSpec) => `${f.short ? `-${f.short}, ` : ''}--${name}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;

export function usageLine<Ctx>(c: CommandSpec<Ctx>): string {
  const flags = Object.entries(c.flags ?? {}).map(([n, f]) => {
    const text = `${f.short ? `-${f.short}|` : ''}--${n}${f.type === 'string' ? ` ${f.value ?? 'VALUE'}` : ''}`;
    return f.required ? text : `[${text}]`;
  });
  return ['maas-mirror', c.name, ...flags, ...(c.args ? [c.args] : [])].join(' ');
}

export function commandHelp<Ctx>(c: CommandSpec<Ctx>): string {
  const rows = Object.entries({ ...c.flags, ...GLOBAL_FLAGS }).map(([n, f]) => [flagLabel(n, f), f.help] as const);
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return [
    `Usage: ${usageLine(c)}`,
    '',
    c.summary,
    ...(c.details ? ['', c.details] : []),
    '',
    'Options:',
    ...rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`),
    '',
  ].join('\n');
}

export function overview<Ctx>(table: readonly CommandSpec<Ctx>[]): string {
  const width = Math.max(...table.map((c) => c.name.length)) + 3;
  return [
    'maas-mirror: a verified, re-signed local mirror of MAAS boot images',
    '',
    'Usage: maas-mirror <command> [options]',
    '',
    'Commands:',
    ...table.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Options:',
    ...Object.entries(GLOBAL_FLAGS).map(([n, f]) => `  ${flagLabel(n, f).padEnd(22)}${f.help}`),
    '',
    '"maas-mirror <command> --help" shows the options of a command.',
    'Exit codes: 0 ok, 1 failed or partial, 2 configuration or usage error, 75 another run holds the lock.',
    '',
  ].join('\n');
}

/** The words that name the command: the first one or two arguments that are not options or --config's value. */
function commandWords(argv: readonly string[]): { words: string[]; at: number[] } {
  const words: string[] = [];
  const at: number[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--config') {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    words.push(a);
    at.push(i);
  }
  return { words, at };
}

/**
 * Finds the command (the longest name matching the first words), then parses
 * the rest strictly against that command's flags and the global ones. Every
 * mistake is a usage error naming what was wrong, with the closest valid
 * spelling when there is one.
 */
export function parseCommandLine<Ctx>(argv: readonly string[], table: readonly CommandSpec<Ctx>[]): ParsedLine<Ctx> {
  const { words, at } = commandWords(argv);
  const two = words.length === 2 ? table.find((c) => c.name === `${words[0]} ${words[1]}`) : undefined;
  const command = two ?? table.find((c) => c.name === words[0]);
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  if (!command) {
    if (words.length === 0) {
      if (argv.includes('--version')) return { kind: 'version' };
      if (wantsHelp) return { kind: 'help', text: overview(table) };
      // A misspelt global flag alone ("--versoin") is named, not reported as a missing command.
      const flag = argv.find((a) => a.startsWith('-') && a !== '--config');
      const globals = Object.keys(GLOBAL_FLAGS).map((n) => `--${n}`);
      const message = flag ? `unknown option "${flag.split('=')[0]}"${suggest(flag.split('=')[0]!, globals)}` : 'no command given';
      return { kind: 'usage-error', message, help: overview(table) };
    }
    const group = table.filter((c) => c.name.startsWith(`${words[0]} `));
    if (group.length > 0 && words.length === 1 && wantsHelp) {
      // "images --help": the group's commands, each with its usage.
      return { kind: 'help', text: group.map((c) => `Usage: ${usageLine(c)}\n  ${c.summary}`).join('\n') + `\nRun "maas-mirror ${words[0]} <command> --help" for the options of one.\n` };
    }
    if (group.length > 0) {
      const sub = words[1];
      const message = sub
        ? `unknown command "${words[0]} ${sub}"${suggest(`${words[0]} ${sub}`, group.map((c) => c.name))}`
        : `"${words[0]}" needs a subcommand: ${group.map((c) => c.name).join(', ')}`;
      return { kind: 'usage-error', message, help: group.map((c) => `Usage: ${usageLine(c)}`).join('\n') + '\n' };
    }
    const names = new Set(table.map((c) => c.name.split(' ')[0]!));
    return { kind: 'usage-error', message: `unknown command "${words[0]}"${suggest(words[0]!, names)}`, help: 'Run "maas-mirror --help" for the list of commands.\n' };
  }
  const nameWords = command.name.split(' ').length;
  const rest = argv.filter((_, i) => !at.slice(0, nameWords).includes(i));
  const options = { ...GLOBAL_FLAGS, ...command.flags };
  if (wantsHelp) return { kind: 'help', text: commandHelp(command) };
  let parsed;
  try {
    parsed = parseArgs({ args: [...rest], options, allowPositionals: true, strict: true });
  } catch (err) {
    return { kind: 'usage-error', message: flagMessage(command, err as Error & { code?: string }, rest), help: shortHelp(command) };
  }
  // A command may declare its own --version VALUE (images remove): only the global boolean prints ours.
  if (parsed.values.version === true) return { kind: 'version' };
  const max = command.maxArgs ?? 0;
  if (parsed.positionals.length > max) {
    const extra = parsed.positionals[max]!;
    const message = `${command.name} takes ${max === 0 ? 'no arguments' : `at most ${plural(max, 'argument')}`}: unexpected argument "${extra}"${suggest(extra, Object.keys(options).map((n) => `--${n}`), extra.replace(/^-*/, '--'))}`;
    return { kind: 'usage-error', message, help: shortHelp(command) };
  }
  const required = Object.entries(command.flags ?? {}).filter(([, f]) => f.required).map(([n]) => `--${n}`);
  const missing = required.filter((f) => parsed.values[f.slice(2)] === undefined);
  if (missing.length > 0) {
    const all = required.length > 1 ? `${required.slice(0, -1).join(', ')} and ${required.at(-1)}` : required[0];
    return { kind: 'usage-error', message: `${command.name} needs ${all} (missing: ${missing.join(', ')})`, help: shortHelp(command) };
  }
  return { kind: 'run', command, options: parsed.values as Record<string, string | boolean | undefined>, args: parsed.positionals };
}

function shortHelp<Ctx>(c: CommandSpec<Ctx>): string {
  return `Usage: ${usageLine(c)}\nRun "maas-mirror ${c.name} --help" for its options.\n`;
}

function suggest(word: string, candidates: Iterable<string>, compareAs = word): string {
  const c = closest(compareAs, candidates);
  return c && c !== word ? ` (did you mean "${c}"?)` : '';
}

/** node:util's messages, reworded to name the command and the nearest real flag. */
function flagMessage<Ctx>(command: CommandSpec<Ctx>, err: Error & { code?: string }, argv: readonly string[]): string {
  const flags = Object.keys({ ...GLOBAL_FLAGS, ...command.flags }).map((n) => `--${n}`);
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const m = /'(-{1,2}[^']*)'/.exec(err.message);
    const flag = (m?.[1] ?? argv.find((a) => a.startsWith('-')) ?? '?').split('=')[0]!;
    return `unknown option "${flag}" for ${command.name}${suggest(flag, flags)}`;
  }
  if (err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return `${command.name}: ${err.message.replace(/^Option '([^']*)'/, 'option $1')}`;
  }
  return `${command.name}: ${err.message}`;
}
