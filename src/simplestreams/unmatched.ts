import type { FilterGroups, ItemFilter } from './filter.js';
import type { FlatItem } from './types.js';

/**
 * Which filter terms match nothing a stream offers, and what the operator
 * probably meant: the stream's own keys and values, nearest first.
 */

/** Distinct values remembered per key: paths and hashes have one per item and are never worth listing. */
export const MAX_VALUES_PER_KEY = 256;
/** Characters compared by the edit distance; longer values are compared by their start. */
const MAX_COMPARED = 64;

export interface FieldCatalog {
  /** key → distinct values (at most MAX_VALUES_PER_KEY). */
  readonly values: ReadonlyMap<string, ReadonlySet<string>>;
  /** Keys with more distinct values than were kept. */
  readonly overflow: ReadonlySet<string>;
}

export function fieldCatalog(items: Iterable<FlatItem>): FieldCatalog {
  const values = new Map<string, Set<string>>();
  const overflow = new Set<string>();
  for (const item of items) {
    for (const [k, v] of Object.entries(item.fields)) {
      let set = values.get(k);
      if (!set) values.set(k, (set = new Set()));
      const text = String(v);
      if (set.has(text)) continue;
      if (set.size < MAX_VALUES_PER_KEY) set.add(text);
      else overflow.add(k);
    }
  }
  return { values, overflow };
}

export interface UnmatchedFilter {
  /** key: no item has the key; value: no item's value matches; group: each term matches, the group together does not. */
  readonly kind: 'key' | 'value' | 'group';
  /** The term's text, or the group's terms joined with " & ". */
  readonly term: string;
  readonly key: string;
  /** Nearest values of the key (kind value) or nearest keys (kind key), best first. */
  readonly suggestions: readonly string[];
  /** kind key: every key the stream has; kind value: the key's values (sorted, bounded). */
  readonly offered: readonly string[];
}

/**
 * A negated term is checked by what it names: `release!=nobel` excludes a
 * value nothing has, so it does nothing, which is as much a typo.
 */
export function unmatchedFilters(groups: FilterGroups, items: readonly FlatItem[], catalog = fieldCatalog(items)): UnmatchedFilter[] {
  const out: UnmatchedFilter[] = [];
  const seen = new Set<string>();
  const keys = [...catalog.values.keys()].sort();
  for (const group of groups) {
    let allTermsMatch = true;
    for (const f of group) {
      const problem = unmatchedTerm(f, items, catalog, keys);
      if (!problem) continue;
      allTermsMatch = false;
      if (seen.has(problem.term)) continue;
      seen.add(problem.term);
      out.push(problem);
    }
    if (allTermsMatch && group.length > 1 && !items.some((i) => group.every((f) => f.matches(i.fields)))) {
      out.push({ kind: 'group', term: group.map((f) => f.text).join(' & '), key: '', suggestions: [], offered: [] });
    }
  }
  return out;
}

function unmatchedTerm(f: ItemFilter, items: readonly FlatItem[], catalog: FieldCatalog, keys: readonly string[]): UnmatchedFilter | undefined {
  const values = catalog.values.get(f.key);
  if (!values) {
    return { kind: 'key', term: f.text, key: f.key, suggestions: nearest(f.key, keys), offered: keys };
  }
  const negated = f.op.startsWith('!');
  // The positive form of the term: an item "has" it when the filter, un-negated, keeps it.
  if (items.some((i) => f.matches(i.fields) !== negated)) return undefined;
  const offered = [...values].sort();
  const wanted = f.op.endsWith('~') ? f.value.replace(/[\\^$()|.*+?[\]{}]/g, '') : f.value;
  return { kind: 'value', term: f.text, key: f.key, suggestions: nearest(wanted, offered), offered };
}

/**
 * The candidates nearest `wanted` (up to three, at the smallest edit
 * distance found within a small limit), else those containing it or
 * contained in it: "nobel" gives noble, "arc" gives arch, "24.04" gives ga-24.04.
 */
export function nearest(wanted: string, candidates: readonly string[]): string[] {
  const w = wanted.toLowerCase().slice(0, MAX_COMPARED);
  if (w === '') return [];
  const limit = Math.max(2, Math.floor(w.length / 3));
  const scored = candidates.map((c) => {
    const l = c.toLowerCase().slice(0, MAX_COMPARED);
    return { c, d: editDistance(w, l), contains: Math.min(l.length, w.length) >= 3 && (l.includes(w) || w.includes(l)) };
  });
  const best = Math.min(...scored.map((x) => x.d));
  const pick = best <= limit ? scored.filter((x) => x.d === best) : scored.filter((x) => x.contains).sort((a, b) => a.d - b.d);
  return pick.slice(0, 3).map((x) => x.c);
}

export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
