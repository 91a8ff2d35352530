import { afterEach, describe, expect, it, vi } from 'vitest';
import { SyncProgress } from './progress.js';

afterEach(() => vi.useRealTimers());

describe('SyncProgress', () => {
  it('reports the rate over the last seconds, whenever it is read', () => {
    vi.useFakeTimers({ now: 0 });
    const p = new SyncProgress();
    p.plan(2, 10_000_000);
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(100);
      p.bytes(100_000); // 1 MB/s
    }
    expect(p.rate).toBeGreaterThan(900_000);
    expect(p.rate).toBeLessThan(1_100_000);
    // Stalled: the window slides and the rate falls to nothing.
    vi.advanceTimersByTime(6000);
    expect(p.rate).toBeLessThan(100_000);
  });

  it('tracks files in flight and done', () => {
    const p = new SyncProgress();
    p.start('a');
    p.start('b');
    p.finish('a');
    p.drop('b');
    expect(p.snapshot()).toMatchObject({ filesDone: 1, current: [] });
  });
});
