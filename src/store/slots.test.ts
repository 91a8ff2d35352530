import { describe, expect, it } from 'vitest';
import { inSlots } from './slots.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('inSlots', () => {
  it('runs at most atOnce at a time and keeps the results in order', async () => {
    let running = 0;
    let most = 0;
    const got = await inSlots([5, 1, 4, 2, 3], 2, async (n) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, n * 3));
      running--;
      return n * 10;
    });
    expect(got).toEqual([50, 10, 40, 20, 30]);
    expect(most).toBe(2);
  });

  it('starts nothing after a failure and throws it only once the started pieces have ended', async () => {
    const started: number[] = [];
    const ended: number[] = [];
    const run = inSlots([1, 2, 3, 4, 5, 6], 2, async (n) => {
      started.push(n);
      await tick();
      if (n === 1) throw new Error('one failed');
      await tick();
      ended.push(n);
    });
    await expect(run).rejects.toThrow('one failed');
    expect(started).toEqual([1, 2]);
    expect(ended).toEqual([2]);
  });

  it('takes an empty list', async () => {
    expect(await inSlots([], 4, async () => 1)).toEqual([]);
  });
});
