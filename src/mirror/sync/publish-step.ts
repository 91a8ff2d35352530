import type { SigningKey } from '../../pgp/keys.js';
import { ArchiveRefusedError } from '../../errors.js';
import { archiveLimits } from '../../store/archive-unpack.js';
import { unpackBootloaders } from '../../store/bootloaders.js';
import { clearHold, writeHold } from '../../store/hold.js';
import { publishSnapshot } from '../publish.js';
import type { SyncRun } from './context.js';
import type { Decision } from './decide.js';
import { failureOf, type SyncFailure } from './report.js';

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
      await unpackBootloaders(layout, manifest, log, { limits: archiveLimits(run.config.bootloaders), signal: run.opts.signal });
    } catch (err) {
      const f = run.failures.add({ ...failureOf('bootloaders', err), ...refusedArchiveOf(err) });
      log.error({ code: f.code, product: f.product, archive: f.path }, `bootloaders not unpacked, the previous ones stay: ${f.message}`);
    }
    await run.hooks.onPublished?.(manifest.id);
  } catch (err) {
    // Nothing reachable changed (current still points at the old tree); say why and keep the downloads.
    run.failures.report(log, 'publish', err, `publishing failed, ${stays}`);
  }
  return { snapshot, published: snapshot !== undefined };
}

/** Which product and archive a refused bootloader archive was. */
function refusedArchiveOf(err: unknown): Pick<SyncFailure, 'product' | 'path'> {
  return err instanceof ArchiveRefusedError ? { product: err.productId, path: err.archive } : {};
}
