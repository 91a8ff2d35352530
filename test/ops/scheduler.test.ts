import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Scheduler, type ScheduleSettings } from '../../src/ops/scheduler.js';

const MIN = 60_000;

/** A job whose runs the test ends by hand. */
function controlledJob() {
  const runs: { startedAt: number; finish: () => void }[] = [];
  const job = vi.fn(
    () =>
      new Promise<void>((resolve) => {
        runs.push({ startedAt: Date.now(), finish: resolve });
      }),
  );
  return { job, runs };
}

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-26T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Scheduler', () => {
  it('runs at start, then every interval plus jitter', async () => {
    const { job, runs } = controlledJob();
    const schedule: ScheduleSettings = { onStart: true, interval: 60 * MIN, jitter: 10 * MIN };
    const s = new Scheduler({ schedule: () => schedule, job, random: () => 0.5 });
    const t0 = Date.now();
    s.start();
    expect(job).toHaveBeenCalledTimes(1);
    expect(s.nextRunAt?.getTime()).toBe(t0 + 65 * MIN);
    runs[0]!.finish();
    await vi.advanceTimersByTimeAsync(65 * MIN - 1);
    expect(job).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(job).toHaveBeenCalledTimes(2);
    expect(runs[1]!.startedAt).toBe(t0 + 65 * MIN);
    expect(s.nextRunAt?.getTime()).toBe(t0 + 130 * MIN);
    s.stop();
  });

  it('keeps the jitter in [0, jitter)', async () => {
    const { job } = controlledJob();
    let r = 0;
    const s = new Scheduler({ schedule: () => ({ onStart: false, interval: 10_000, jitter: 1000 }), job, random: () => r });
    const t0 = Date.now();
    s.start();
    expect(job).not.toHaveBeenCalled();
    expect(s.nextRunAt!.getTime() - t0).toBe(10_000);
    r = 0.999999;
    s.reschedule();
    expect(s.nextRunAt!.getTime() - t0).toBe(10_999);
    s.stop();
  });

  it('does not start at start when onStart is false', async () => {
    const { job } = controlledJob();
    const s = new Scheduler({ schedule: () => ({ onStart: false, interval: MIN, jitter: 0 }), job });
    s.start();
    await vi.advanceTimersByTimeAsync(MIN - 1);
    expect(job).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(job).toHaveBeenCalledTimes(1);
    s.stop();
  });

  it('skips a run that falls due while the previous one is still going, and re-arms', async () => {
    const { job, runs } = controlledJob();
    const s = new Scheduler({ schedule: () => ({ onStart: true, interval: MIN, jitter: 0 }), job });
    const t0 = Date.now();
    s.start();
    await vi.advanceTimersByTimeAsync(MIN);
    // Due, but the first run has not ended: skipped, next one armed.
    expect(job).toHaveBeenCalledTimes(1);
    expect(s.running).toBe(true);
    expect(s.nextRunAt!.getTime()).toBe(t0 + 2 * MIN);
    runs[0]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.running).toBe(false);
    await vi.advanceTimersByTimeAsync(MIN);
    expect(job).toHaveBeenCalledTimes(2);
    expect(runs[1]!.startedAt).toBe(t0 + 2 * MIN);
    runs[1]!.finish();
    s.stop();
  });

  it('keeps going after a job that throws', async () => {
    let calls = 0;
    const s = new Scheduler({
      schedule: () => ({ onStart: true, interval: MIN, jitter: 0 }),
      job: async () => {
        calls++;
        throw new Error('a sync is already running');
      },
    });
    s.start();
    await vi.advanceTimersByTimeAsync(3 * MIN);
    expect(calls).toBe(4);
    s.stop();
  });

  it('stops: no timer left, no more runs, nextRunAt undefined', async () => {
    const { job, runs } = controlledJob();
    const s = new Scheduler({ schedule: () => ({ onStart: true, interval: MIN, jitter: 0 }), job });
    s.start();
    runs[0]!.finish();
    s.stop();
    expect(s.nextRunAt).toBeUndefined();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10 * MIN);
    expect(job).toHaveBeenCalledTimes(1);
  });

  it('applies a new interval from the next arming (SIGHUP)', async () => {
    const { job, runs } = controlledJob();
    let schedule: ScheduleSettings = { onStart: false, interval: 60 * MIN, jitter: 0 };
    const s = new Scheduler({ schedule: () => schedule, job });
    s.start();
    schedule = { onStart: false, interval: 5 * MIN, jitter: 0 };
    s.reschedule();
    await vi.advanceTimersByTimeAsync(5 * MIN);
    expect(job).toHaveBeenCalledTimes(1);
    runs[0]!.finish();
    s.stop();
  });

  it('turns periodic runs off with interval 0, still running at start', async () => {
    const { job, runs } = controlledJob();
    const s = new Scheduler({ schedule: () => ({ onStart: true, interval: 0, jitter: 0 }), job });
    s.start();
    expect(job).toHaveBeenCalledTimes(1);
    expect(s.nextRunAt).toBeUndefined();
    runs[0]!.finish();
    await vi.advanceTimersByTimeAsync(365 * 24 * 60 * MIN);
    expect(job).toHaveBeenCalledTimes(1);
    s.stop();
  });

  it('reaches intervals longer than setTimeout allows', async () => {
    const { job } = controlledJob();
    const DAY = 24 * 60 * MIN;
    const s = new Scheduler({ schedule: () => ({ onStart: false, interval: 30 * DAY, jitter: 0 }), job });
    s.start();
    await vi.advanceTimersByTimeAsync(30 * DAY - 1);
    expect(job).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(job).toHaveBeenCalledTimes(1);
    s.stop();
  });

  it('retries a failed run after schedule.retry, doubling up to the interval, and keeps the cadence once one succeeds', async () => {
    const outcomes: boolean[] = [true, true, true, true, true, false, false];
    const starts: number[] = [];
    const job = vi.fn(async () => {
      starts.push(Date.now());
      return { failed: outcomes.shift() ?? false };
    });
    const s = new Scheduler({ schedule: () => ({ onStart: true, interval: 60 * MIN, jitter: 0, retry: 5 * MIN }), job });
    const t0 = Date.now();
    s.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.nextRunAt!.getTime()).toBe(t0 + 5 * MIN);
    await vi.advanceTimersByTimeAsync(400 * MIN);
    // 5, 10, 20, 40 minutes after each failure, then the interval caps it; the success keeps the interval.
    expect(starts.map((t) => (t - t0) / MIN)).toEqual([0, 5, 15, 35, 75, 135, 195, 255, 315, 375]);
    s.stop();
  });

  it('does not retry with retry unset or periodic runs off', async () => {
    const job = vi.fn(async () => ({ failed: true }));
    const s = new Scheduler({ schedule: () => ({ onStart: true, interval: 60 * MIN, jitter: 0 }), job });
    const t0 = Date.now();
    s.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(s.nextRunAt!.getTime()).toBe(t0 + 60 * MIN);
    s.stop();
    const off = new Scheduler({ schedule: () => ({ onStart: true, interval: 0, jitter: 0, retry: MIN }), job });
    off.start();
    await vi.advanceTimersByTimeAsync(10 * MIN);
    expect(off.nextRunAt).toBeUndefined();
    expect(job).toHaveBeenCalledTimes(2);
    off.stop();
  });
});
