import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, UpstreamHttpError, UpstreamNetworkError } from '../errors.js';

export interface RetryOptions {
  retries: number;
  /** First backoff; doubles each attempt, with full jitter. */
  baseMs?: number;
  maxMs?: number;
  signal?: AbortSignal;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

/** Network errors, 5xx, 408 and 429 are worth another try; 403/404 and bad content are not. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof UpstreamHttpError) return err.retryable;
  return err instanceof UpstreamNetworkError;
}

export function backoffMs(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return Math.round(random() * Math.min(maxMs, baseMs * 2 ** attempt));
}

export async function withRetries<T>(fn: (attempt: number) => Promise<T>, opts: RetryOptions): Promise<T> {
  const base = opts.baseMs ?? 500;
  const max = opts.maxMs ?? 30_000;
  for (let attempt = 0; ; attempt++) {
    if (opts.signal?.aborted) throw new AbortedError();
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= opts.retries || !isRetryable(err) || opts.signal?.aborted) throw err;
      let delay = backoffMs(attempt, base, max);
      // Retry-After is the server telling us when it can take us again: honour it, within reason.
      if (err instanceof UpstreamHttpError && err.retryAfterMs !== undefined) {
        delay = Math.min(Math.max(delay, err.retryAfterMs), 5 * 60_000);
      }
      opts.onRetry?.(err, attempt + 1, delay);
      await sleep(delay, undefined, { signal: opts.signal }).catch(() => {
        throw new AbortedError();
      });
    }
  }
}

/** Retry-After as seconds or an HTTP date, in ms from now. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
