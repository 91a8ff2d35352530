import type { Config } from '../config/load.js';
import type { MetricJson } from '../ops/index.js';

/** What the primary tells an HTTP worker (over cluster's IPC channel). */
export type ToWorker =
  /** The first message: the worker serves nothing before it. */
  | { readonly type: 'start'; readonly config: Config; readonly socketPath: string; readonly drainMs: number }
  /** A publish: drop every cache, then ack. */
  | { readonly type: 'invalidate'; readonly id: number }
  /** SIGHUP took a new configuration: use it, drop every cache, then ack. */
  | { readonly type: 'config'; readonly id: number; readonly config: Config }
  | { readonly type: 'metrics'; readonly id: number }
  /** Stop accepting, finish what runs within the drain window, exit 0. */
  | { readonly type: 'drain' };

/** What an HTTP worker tells the primary. */
export type FromWorker =
  /** Listening for orders: the primary answers with 'start'. */
  | { readonly type: 'hello' }
  /** Whole log lines, written by the primary to the one log stream. */
  | { readonly type: 'log'; readonly text: string }
  | { readonly type: 'listening' }
  /** It cannot serve (its listen failed): starting another would fail alike, so the primary stops. */
  | { readonly type: 'failed'; readonly code: string | undefined; readonly message: string }
  | { readonly type: 'ack'; readonly id: number }
  | { readonly type: 'metrics'; readonly id: number; readonly json: MetricJson };

export function isFromWorker(msg: unknown): msg is FromWorker {
  return typeof msg === 'object' && msg !== null && typeof (msg as { type?: unknown }).type === 'string';
}
