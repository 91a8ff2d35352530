import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A token bucket shared by all downloads of a sync, so `download.rateLimit`
 * caps the mirror's total bandwidth however many files are in flight.
 */
export class RateLimiter {
  private tokens: number;
  private last = performance.now();

  constructor(private readonly bytesPerSecond: number) {
    this.tokens = bytesPerSecond;
  }

  get enabled(): boolean {
    return this.bytesPerSecond > 0;
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!this.enabled) return;
    for (;;) {
      const now = performance.now();
      this.tokens = Math.min(this.bytesPerSecond, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond);
      this.last = now;
      if (this.tokens >= bytes || this.tokens >= this.bytesPerSecond) {
        this.tokens -= bytes;
        return;
      }
      const wait = ((Math.min(bytes, this.bytesPerSecond) - this.tokens) / this.bytesPerSecond) * 1000;
      await sleep(Math.max(5, wait), undefined, { signal });
    }
  }
}
