import { describe, expect, it } from 'vitest';
import { newSnapshotId, SNAPSHOT_ID_RE } from './snapshots.js';

describe('snapshot ids', () => {
  it('sort by time to the millisecond', () => {
    const a = newSnapshotId(new Date('2026-11-26T20:15:00.123Z'));
    const b = newSnapshotId(new Date('2026-11-26T20:15:00.124Z'));
    expect(a).toMatch(SNAPSHOT_ID_RE);
    expect(a.startsWith('20261126T201500123Z-')).toBe(true);
    expect([b, a].sort()).toEqual([a, b]);
  });

  it('sort after existing ids even when the clock goes back or stands still', () => {
    const now = new Date('2026-11-26T20:15:00.000Z');
    const first = newSnapshotId(now);
    const second = newSnapshotId(now, [first]);
    const third = newSnapshotId(new Date('2026-01-01T00:00:00Z'), [first, second]);
    expect([third, second, first].sort()).toEqual([first, second, third]);
  });
});
