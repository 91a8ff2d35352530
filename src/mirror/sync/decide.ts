import type { Hold } from '../../store/hold.js';
import type { SnapshotManifest } from '../../store/manifest.js';
import { buildModel, type PublishContent, type PublishModel } from '../next-tree.js';

/** What the decision needs to know of the current snapshot. */
export interface CurrentTree {
  readonly id: string;
  readonly fingerprint: string;
  readonly signedBy?: string;
  readonly sources: SnapshotManifest['sources'];
  readonly contents: readonly PublishContent[];
}

export interface DecideInput {
  readonly current: CurrentTree | undefined;
  /** The tree the held files make (already checked against MAAS's rules). */
  readonly model: PublishModel;
  readonly held: (sha256: string) => boolean;
  /** Sources as configured, recorded in a new snapshot's manifest. */
  readonly sources: SnapshotManifest['sources'];
  /** Fingerprint of the signing key; undefined when it could not be loaded. */
  readonly keyFingerprint: string | undefined;
  /** The rollback hold as read; 'unreadable' when the file exists but cannot be understood. */
  readonly hold: Hold | 'unreadable' | undefined;
  /** MAAS would reject the tree as a whole. */
  readonly treeRejected: boolean;
  /** Some source could not be read, so its contents were carried from the current snapshot. */
  readonly carried: boolean;
  /** A file the current snapshot lists was lost and fetched again. */
  readonly repaired: boolean;
  /** Adds what rides along outside the sources (site-built images) to a tree rebuilt here. */
  readonly extend?: (model: PublishModel) => PublishModel;
}

export interface LogNote {
  readonly level: 'info' | 'warn';
  readonly fields?: Record<string, unknown>;
  readonly message: string;
}

export type Decision =
  | {
      readonly action: 'publish';
      readonly model: PublishModel;
      readonly sources: SnapshotManifest['sources'];
      /** The hold to carry to the new snapshot, or 'clear' to lift one that has served its purpose. */
      readonly hold: Hold | 'clear' | undefined;
      readonly note?: LogNote;
    }
  | { readonly action: 'keep'; readonly note?: LogNote };

/**
 * Phase 6 (pure): publish upstream's tree, publish the held tree again (new signing key while
 * rolled back), or keep the current snapshot, and why. The failures that rule out publishing
 * (no key, a tree MAAS rejects, an unreadable hold) were reported where they were found.
 */
export function decidePublish(input: DecideInput): Decision {
  const { current, model, hold } = input;
  if (input.keyFingerprint === undefined || input.treeRejected || hold === 'unreadable') return { action: 'keep' };
  const rekeyed = current !== undefined && current.signedBy !== input.keyFingerprint;
  const activeHold = hold !== undefined && current?.id === hold.snapshot ? hold : undefined;
  // Only a sync that read every source can tell upstream moved on; carried contents are the held tree's own.
  const upstreamMoved = activeHold !== undefined && !input.carried && model.fingerprint !== activeHold.newestFingerprint;
  if (activeHold && !upstreamMoved) {
    if (!rekeyed) {
      return {
        action: 'keep',
        note: {
          level: 'warn',
          fields: { snapshot: current?.id, rolledBackAt: activeHold.since },
          message:
            `current stays at ${activeHold.snapshot}, where "rollback" put it: upstream offers nothing newer than the snapshot rolled away from ` +
            `(to go forward now: maas-mirror rollback ${activeHold.newest})`,
        },
      };
    }
    // The held tree, not upstream's newest, is what gets re-signed; the hold moves to the new snapshot.
    return {
      action: 'publish',
      model: (input.extend ?? ((m: PublishModel) => m))(buildModel({ builds: [], carried: [...current!.contents], held: input.held }).model),
      sources: current!.sources,
      hold: activeHold,
      note: { level: 'info', fields: { heldSince: activeHold.since }, message: 'the signing key changed: the rolled-back tree is published again, signed with the new key' },
    };
  }
  if (model.contents.length === 0 && !current) {
    return { action: 'keep', note: { level: 'warn', message: 'nothing to publish: no source gave a complete product' } };
  }
  if (current && current.fingerprint === model.fingerprint && !input.repaired && !rekeyed) {
    return { action: 'keep', note: { level: 'info', fields: { snapshot: current.id }, message: 'nothing changed upstream: the current snapshot stays' } };
  }
  return {
    action: 'publish',
    model,
    sources: input.sources,
    // A hold on a snapshot no longer current is stale; one whose upstream moved on has served its purpose.
    hold: hold !== undefined ? 'clear' : undefined,
    note: rekeyed
      ? { level: 'info', fields: { from: current.signedBy, to: input.keyFingerprint }, message: 'the signing key changed: publishing the tree signed with the new key' }
      : undefined,
  };
}
