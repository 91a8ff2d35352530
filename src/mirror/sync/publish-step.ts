import type { SigningKey } from '../../pgp/keys.js';
import { unpackBootloaders } from '../../store/bootloaders.js';
import { clearHold, writeHold } from '../../store/hold.js';
import { publishSnapshot } from '../publish.js';
import type { SyncRun } from './context.js';
import type { Decision } from './decide.js';

export interface PublishOutcome {
  readonly snapshot: string | undefined;
  readonly published: boolean;
}

/**
 * Phase 7: write and switch to the new snapshot the decision asks for, move or lift the rollback
 * hold, unpack its bootloaders. A failure leaves `current` where it was (or, past the switch,
 * on the new tree) and is reported.
 */
export async function publishDecision(
  run: SyncRun,
  decision: Extract<Decision, { action: 'publish' }>,
  key: SigningKey,
  /** What stays if this fails: "the current snapshot stays" or "there is still no snapshot". */
  stays: string,
): Promise<PublishOutcome> {
  const { layout, log } = run;
  let snapshot: string | undefined;
  try {
    const manifest = await publishSnapshot(decision.model, { layout, store: run.store, key, logger: log, sources: decision.sources });
    snapshot = manifest.id;
    if (decision.hold === 'clear') await clearHold(layout);
    else if (decision.hold) await writeHold(layout, { ...decision.hold, snapshot: manifest.id });
    try {
      // Part of publishing, whoever publishes (the daemon or cron's CLI): TFTP and HTTP serve these by bare name.
      await unpackBootloaders(layout, manifest, log);
    } catch (err) {
      run.failures.report(log, 'bootloaders', err, 'bootloaders not unpacked, the previous ones stay');
    }
    await run.hooks.onPublished?.(manifest.id);
  } catch (err) {
    // Nothing reachable changed (current still points at the old tree); say why and keep the downloads.
    run.failures.report(log, 'publish', err, `publishing failed, ${stays}`);
  }
  return { snapshot, published: snapshot !== undefined };
}
