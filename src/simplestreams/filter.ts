/**
 * sstream-mirror's filter language: `key=value`, `key!=value`, `key~regex`,
 * `key!~regex`. A regex is an unanchored search. A missing key compares as
 * the empty string, as simplestreams does, so `os!=ubuntu` keeps items that
 * carry no `os` at all.
 */

import { FilterSyntaxError } from '../errors.js';

export type FilterOp = '=' | '!=' | '~' | '!~';

export interface ItemFilter {
  readonly key: string;
  readonly op: FilterOp;
  readonly value: string;
  readonly text: string;
  matches(item: Readonly<Record<string, unknown>>): boolean;
}

const EXPR = /^([\w|-]+)\s*(!?[=~])\s*(.*?)\s*$/;

export { FilterSyntaxError };

export function parseFilter(text: string): ItemFilter {
  const m = EXPR.exec(text);
  if (!m) {
    throw new FilterSyntaxError(text, 'expected key=value, key!=value, key~regex or key!~regex');
  }
  const [, key, op, value] = m as unknown as [string, string, FilterOp, string];
  // "arch==amd64" would otherwise compare with the value "=amd64" and silently match nothing.
  const doubled = (op === '=' || op === '!=') && /^[=~]/.exec(value)?.[0];
  if (doubled) {
    const fixed = `${key}${op === '=' ? (doubled === '=' ? '=' : '~') : doubled === '=' ? '!=' : '!~'}${value.slice(1)}`;
    throw new FilterSyntaxError(text, `"${op}${doubled}" is not an operator; did you mean ${JSON.stringify(fixed)}?`);
  }
  let test: (v: string) => boolean;
  if (op === '=' || op === '!=') {
    test = (v) => v === value;
  } else {
    let re: RegExp;
    try {
      re = new RegExp(value);
    } catch (err) {
      throw new FilterSyntaxError(text, `bad regular expression: ${(err as Error).message}`);
    }
    test = (v) => re.test(v);
  }
  const negate = op.startsWith('!');
  return {
    key,
    op,
    value,
    text,
    matches(item) {
      const raw = item[key];
      const v = typeof raw === 'string' || typeof raw === 'number' ? String(raw) : '';
      return test(v) !== negate;
    },
  };
}

/** A group is an AND of filters; a list of groups is an OR. No groups keeps everything. */
export type FilterGroups = readonly (readonly ItemFilter[])[];

export function parseFilterGroups(groups: readonly (readonly string[])[]): FilterGroups {
  return groups.map((g) => g.map(parseFilter));
}

export function matchesGroups(groups: FilterGroups, item: Readonly<Record<string, unknown>>): boolean {
  if (groups.length === 0) return true;
  return groups.some((g) => g.every((f) => f.matches(item)));
}
