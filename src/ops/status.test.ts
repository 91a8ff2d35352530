import { describe, expect, it } from 'vitest';
import type { SyncRecord } from './coordinator.js';
import { sourceCheck } from './status.js';

function record(over: Partial<SyncRecord>): SyncRecord {
  return {
    id: 'sync-1',
    reason: 'api',
    result: 'failed',
    startedAt: '2026-12-03T10:00:00.000Z',
    finishedAt: '2026-12-03T10:01:00.000Z',
    durationMs: 60_000,
    failures: [],
    warnings: [],
    sources: [],
    snapshot: null,
    published: false,
    downloaded: { files: 0, bytes: 0 },
    error: null,
    ...over,
  };
}

describe('sourceCheck: the badge follows what the last sync found', () => {
  it('a source read and verified by a sync refused for disk space stays verified', () => {
    const r = record({
      sources: [{ name: 'stable', result: 'ok' }],
      failures: [{ source: '', code: 'MM_DISK_SPACE', message: 'not enough space' }],
    });
    expect(sourceCheck('stable', true, [r])).toEqual({ state: 'verified', sync: 'sync-1', at: r.finishedAt, code: null });
  });

  it('a replayed older file is a refusal of its own, not "could not read it"', () => {
    const r = record({
      sources: [{ name: 'stable', result: 'failed' }],
      failures: [{ source: 'stable', code: 'MM_DOWNGRADE_REFUSED', message: 'older than accepted' }],
    });
    expect(sourceCheck('stable', true, [r])).toMatchObject({ state: 'downgrade', code: 'MM_DOWNGRADE_REFUSED' });
  });

  it('a bad signature is invalid, a network failure unreachable', () => {
    const bad = record({ sources: [{ name: 's', result: 'failed' }], failures: [{ source: 's', code: 'MM_SIGNATURE_INVALID', message: 'x' }] });
    const dns = record({ sources: [{ name: 's', result: 'failed' }], failures: [{ source: 's', code: 'MM_UPSTREAM_UNREACHABLE', message: 'x' }] });
    expect(sourceCheck('s', true, [bad]).state).toBe('invalid');
    expect(sourceCheck('s', true, [dns]).state).toBe('unreachable');
  });
});
