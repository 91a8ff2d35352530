import { describe, expect, it } from 'vitest';
import type { PublishModel } from '../next-tree.js';
import { decidePublish, type CurrentTree, type DecideInput } from './decide.js';

const model = (fingerprint: string, contents = 1): PublishModel => ({
  contents: Array.from({ length: contents }, (_, i) => ({
    contentId: `c${i}`,
    source: 's',
    basePath: `streams/v1/c${i}`,
    entry: { datatype: 'image-downloads', format: 'products:1.0', products: [], updated: 'x' },
    doc: { content_id: `c${i}`, datatype: 'image-downloads', format: 'products:1.0', updated: 'x', products: {} },
  })),
  files: new Map(),
  bootloaders: [],
  fingerprint,
});

const current: CurrentTree = { id: 'snap-1', fingerprint: 'fp-1', signedBy: 'key-A', sources: {}, contents: model('fp-1').contents };
const hold = { snapshot: 'snap-1', newest: 'snap-2', newestFingerprint: 'fp-2', since: '2026-01-01T00:00:00Z' };

const input = (over: Partial<DecideInput>): DecideInput => ({
  current,
  model: model('fp-1'),
  held: () => true,
  sources: { s: { url: 'http://u/', onDemand: false } },
  keyFingerprint: 'key-A',
  hold: undefined,
  treeRejected: false,
  carried: false,
  repaired: false,
  ...over,
});

describe('decidePublish', () => {
  it('keeps the current snapshot when nothing changed, and says so', () => {
    const d = decidePublish(input({}));
    expect(d).toMatchObject({ action: 'keep', note: { level: 'info', message: expect.stringContaining('nothing changed') } });
  });

  it('publishes a changed tree with the configured sources', () => {
    const d = decidePublish(input({ model: model('fp-2') }));
    expect(d).toMatchObject({ action: 'publish', sources: { s: { url: 'http://u/' } }, hold: undefined });
    expect(d.action === 'publish' && d.model.fingerprint).toBe('fp-2');
  });

  it('republishes the same tree when a lost file was fetched again, or the signing key changed', () => {
    expect(decidePublish(input({ repaired: true })).action).toBe('publish');
    const rekeyed = decidePublish(input({ keyFingerprint: 'key-B' }));
    expect(rekeyed).toMatchObject({ action: 'publish', note: { fields: { from: 'key-A', to: 'key-B' } } });
  });

  it('publishes nothing without a key, with a tree MAAS rejects, or with an unreadable hold', () => {
    expect(decidePublish(input({ model: model('fp-2'), keyFingerprint: undefined }))).toEqual({ action: 'keep' });
    expect(decidePublish(input({ model: model('fp-2'), treeRejected: true }))).toEqual({ action: 'keep' });
    expect(decidePublish(input({ model: model('fp-2'), hold: 'unreadable' }))).toEqual({ action: 'keep' });
  });

  it('says so when there is nothing at all to publish', () => {
    const d = decidePublish(input({ current: undefined, model: model('fp-0', 0) }));
    expect(d).toMatchObject({ action: 'keep', note: { level: 'warn', message: expect.stringContaining('nothing to publish') } });
  });

  it('stays on a rolled-back snapshot until upstream offers something new', () => {
    const stays = decidePublish(input({ hold, model: model('fp-2') }));
    expect(stays).toMatchObject({ action: 'keep', note: { level: 'warn', message: expect.stringContaining('maas-mirror rollback snap-2') } });
    const moved = decidePublish(input({ hold, model: model('fp-3') }));
    expect(moved).toMatchObject({ action: 'publish', hold: 'clear' });
  });

  it('cannot tell upstream moved on while a source was carried', () => {
    expect(decidePublish(input({ hold, model: model('fp-3'), carried: true })).action).toBe('keep');
  });

  it('re-signs the held tree, not upstream newest, when the key changes during a hold', () => {
    const d = decidePublish(input({ hold, model: model('fp-2'), keyFingerprint: 'key-B' }));
    expect(d.action).toBe('publish');
    if (d.action !== 'publish') return;
    expect(d.hold).toEqual(hold);
    expect(d.model.contents.map((c) => c.contentId)).toEqual(current.contents.map((c) => c.contentId));
    expect(d.sources).toBe(current.sources);
  });

  it('lifts a stale hold that names another snapshot', () => {
    expect(decidePublish(input({ hold: { ...hold, snapshot: 'snap-0' }, model: model('fp-2') }))).toMatchObject({ action: 'publish', hold: 'clear' });
  });
});
