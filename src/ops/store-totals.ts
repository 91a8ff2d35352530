import { BlobStore } from '../store/blobs.js';
import { Layout } from '../store/layout.js';

export interface StoreTotals {
  readonly blobs: number;
  readonly bytes: number;
  /** ISO time of the walk that produced these numbers. */
  readonly measuredAt: string;
}

/**
 * The store's size, cached. Walking every blob stats thousands of files, too
 * slow for each scrape or status poll: the walk runs after each sync and gc,
 * and in the background when the numbers are older than maxAgeMs (a cron
 * `gc` in another process changes the store without telling us).
 */
export class StoreTotalsCache {
  private value: StoreTotals | undefined;
  private walking: Promise<StoreTotals | undefined> | undefined;
  private measured = 0;

  constructor(
    private readonly dataDir: () => string,
    private readonly maxAgeMs = 15 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The last numbers known, without waiting; starts a walk when they are missing or stale. */
  get totals(): StoreTotals | undefined {
    if (!this.walking && (this.value === undefined || this.now() - this.measured > this.maxAgeMs)) void this.refresh();
    return this.value;
  }

  /**
   * Walks the store. Walks never run in parallel: one asked for during a walk
   * runs after it, so it sees what the sync that asked for it wrote.
   */
  refresh(): Promise<StoreTotals | undefined> {
    const previous = this.walking ?? Promise.resolve(undefined);
    const walk: Promise<StoreTotals | undefined> = previous
      .then(() => new BlobStore(new Layout(this.dataDir())).totals())
      .then(
        (t) => {
          this.measured = this.now();
          this.value = { ...t, measuredAt: new Date(this.measured).toISOString() };
          return this.value;
        },
        // Unreadable store: keep the last numbers; /readyz and the status report the disk.
        () => this.value,
      )
      .finally(() => {
        if (this.walking === walk) this.walking = undefined;
      });
    this.walking = walk;
    return walk;
  }
}
