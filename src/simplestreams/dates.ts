/**
 * simplestreams' `updated` stamps: RFC 2822, always UTC as the python tools
 * write them (`time.strftime("%a, %d %b %Y %H:%M:%S +0000")`).
 */

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function formatRfc2822(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new RangeError('formatRfc2822: invalid date');
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

// RFC 2822 3.3, minus comments and folding: the day name and the seconds are
// optional, and the zone may be numeric or one of the obsolete UTC names.
const LENIENT =
  /^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?(\d{1,2})\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{4})\s+(\d{2}):(\d{2})(?::(\d{2}))?\s+([+-]\d{4}|UT|GMT|Z)$/;

// What MAAS 3.8 accepts: datetime.strptime(v, "%a, %d %b %Y %H:%M:%S %z").
// Day name, seconds and a numeric zone are all required there.
const STRICT =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})$/;

function build(m: RegExpExecArray): Date | undefined {
  const [, dayName, day, mon, year, hh, mm, ss, zone] = m;
  const h = Number(hh);
  const min = Number(mm);
  const s = Number(ss ?? 0);
  if (h > 23 || min > 59 || s > 59) return undefined;
  let offset = 0;
  if (zone && /^[+-]\d{4}$/.test(zone)) {
    const zm = Number(zone.slice(3, 5));
    if (zm > 59) return undefined;
    offset = (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + zm);
  }
  const local = new Date(Date.UTC(Number(year), MONTHS.indexOf(mon!), Number(day), h, min, s));
  // Date.UTC rolls 31 Feb over into March; a date that does not exist is refused.
  if (local.getUTCDate() !== Number(day)) return undefined;
  // RFC 2822 3.3: the day name, when given, MUST be the one the date implies.
  if (dayName && DAYS[local.getUTCDay()] !== dayName) return undefined;
  return new Date(local.getTime() - offset * 60_000);
}

/** Any RFC 2822 date (as found upstream); undefined when it is not one, never a guess. */
export function parseRfc2822(s: string): Date | undefined {
  if (typeof s !== 'string') return undefined;
  const m = LENIENT.exec(s.trim());
  return m ? build(m) : undefined;
}

/** Only the exact form MAAS parses; what every `updated` we publish must be. */
export function parseStrictRfc2822(s: string): Date | undefined {
  if (typeof s !== 'string') return undefined;
  const m = STRICT.exec(s);
  return m ? build(m) : undefined;
}
