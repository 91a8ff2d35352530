import { setFlagsFromString } from 'node:v8';

/**
 * A one-shot `sync` is a batch job: what counts is its peak memory, not the last bit of speed.
 * By default V8 lets the heap grow to about three times what is live before a full collection,
 * and a sync at 10,000 products makes hundreds of MB of short-lived garbage around each 12 MB
 * products file (parsing, checking, signing): measured, the peak was ~360 MB for ~80 MB live.
 * V8's optimize-for-size policy collects sooner: ~180 MB, at about the same run time (the
 * hashing runs in workers and native code). Planning alone takes ~0.5 s longer at 10,000
 * products under it, so a dry run keeps the defaults. Set before the sync allocates anything
 * large; V8 reads it as the heap grows. The daemon keeps V8's defaults: it serves, and its
 * syncs are measured on their own.
 */
export function preferSmallHeap(): void {
  setFlagsFromString('--optimize-for-size');
}
