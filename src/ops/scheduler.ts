import { silentLogger, type Logger } from '../log.js';

export interface ScheduleSettings {
  readonly onStart: boolean;
  /** ms between runs; 0 turns periodic runs off (syncs then come from the API or cron). */
  readonly interval: number;
  /** A random [0, jitter) ms added to each interval, so many mirrors do not hit upstream together. */
  readonly jitter: number;
  /** ms before the first retry after a failed run, doubling with each further failure up to the interval; 0 or absent: no retries. */
  readonly retry?: number;
}

/** What a run reports back: a failed one is retried sooner than the interval. */
export interface JobOutcome {
  readonly failed: boolean;
}

export interface SchedulerOptions {
  /** Read at every arming, so a SIGHUP's new schedule applies from the next run on. */
  readonly schedule: () => ScheduleSettings;
  /** One run; the scheduler waits for it and never starts another meanwhile. */
  readonly job: () => Promise<JobOutcome | void>;
  readonly logger?: Logger;
  /** [0, 1), for the jitter; tests pin it. */
  readonly random?: () => number;
}

/** setTimeout's limit (about 24.8 days); longer intervals are reached in steps. */
const MAX_TIMEOUT = 2 ** 31 - 1;

/**
 * Runs the job at start and then every interval plus jitter, measured from
 * when the previous run was due (not from when it ended), so the cadence
 * does not drift with sync duration. A run still going when the next is due
 * makes that one skipped, never doubled. A failed run is retried after
 * schedule.retry, then twice that, and so on up to the interval, instead of
 * waiting a whole interval with a broken mirror.
 */
export class Scheduler {
  private timer: NodeJS.Timeout | undefined;
  private due: number | undefined;
  private inFlight: Promise<void> | undefined;
  private started = false;
  /** Failed runs in a row: the retry delay doubles with each. */
  private failures = 0;
  private readonly logger: Logger;
  private readonly random: () => number;

  constructor(private readonly options: SchedulerOptions) {
    this.logger = (options.logger ?? silentLogger()).child({ component: 'scheduler' });
    this.random = options.random ?? Math.random;
  }

  /** When the next scheduled run is due; undefined when stopped or with periodic runs off. */
  get nextRunAt(): Date | undefined {
    return this.due === undefined ? undefined : new Date(this.due);
  }

  /** A scheduled run is in progress. */
  get running(): boolean {
    return this.inFlight !== undefined;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    if (this.options.schedule().onStart) this.fire();
    else this.arm();
  }

  /** Re-arms from now with the current settings (after a configuration reload). */
  reschedule(): void {
    if (this.started) this.arm();
  }

  /** No more runs; a run in progress goes on (the coordinator aborts it). */
  stop(): void {
    this.started = false;
    this.due = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Resolves when no scheduled run is in progress. */
  async idle(): Promise<void> {
    await this.inFlight;
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const { interval, jitter } = this.options.schedule();
    if (!(interval > 0)) {
      this.due = undefined;
      return;
    }
    this.due = Date.now() + interval + Math.floor(this.random() * Math.max(0, jitter));
    this.wait();
  }

  /** Brings the next run forward to the retry delay, unless the schedule has it sooner. */
  private retrySoon(): void {
    if (!this.started) return;
    const { interval, retry } = this.options.schedule();
    if (!(interval > 0) || !(retry !== undefined && retry > 0)) return;
    this.failures++;
    const delay = Math.min(retry * 2 ** Math.min(this.failures - 1, 40), interval);
    const at = Date.now() + delay;
    if (this.due !== undefined && at >= this.due) return;
    clearTimeout(this.timer);
    this.due = at;
    this.logger.info(
      { nextRunAt: new Date(at).toISOString(), failedRuns: this.failures, delayMs: delay },
      `the sync failed; retrying in ${Math.round(delay / 1000)} s (failed ${this.failures} time${this.failures > 1 ? 's' : ''} in a row)`,
    );
    this.wait();
  }

  private wait(): void {
    const due = this.due!;
    this.timer = setTimeout(() => {
      if (Date.now() < due) this.wait();
      else this.fire();
    }, Math.min(Math.max(0, due - Date.now()), MAX_TIMEOUT));
    // The servers keep the daemon alive; the schedule alone should not.
    this.timer.unref();
  }

  private fire(): void {
    this.arm();
    if (this.inFlight) {
      this.logger.warn({ nextRunAt: this.nextRunAt?.toISOString() }, 'the previous scheduled sync is still running; skipping this one');
      return;
    }
    const run = (async () => {
      try {
        const outcome = await this.options.job();
        if (outcome?.failed) this.retrySoon();
        else this.failures = 0;
      } catch (err) {
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'scheduled run did not happen');
      }
    })();
    this.inFlight = run.finally(() => {
      this.inFlight = undefined;
    });
  }
}
