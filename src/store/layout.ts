import { join } from 'node:path';

/**
 * The layout under dataDir is an interface: operators back it up, serve
 * `current/` with nginx, and tooling reads it. Change it only with care.
 *
 *   blobs/sha256/<2 hex>/<64 hex>   verified content, the only copy of each file
 *   partial/<64 hex>.part           downloads in progress (resumed with Range)
 *   quarantine/<64 hex>             blobs that failed `verify`
 *   snapshots/<id>/                 a complete static simplestreams tree
 *   manifests/<id>.json             what snapshot <id> lists (see manifest.ts)
 *   current -> snapshots/<id>       switched atomically on publish
 *   bootloaders -> bootloaders.d/<id>   unpacked bootloaders, switched atomically
 *   state/<source>.json             conditional-request validators, accepted dates
 *   state/_wanted.json              sha256s the last sync selected: gc keeps them
 *   state/_hold.json                left by rollback: syncs keep current there (see hold.ts)
 *   state/_unchanged.json           what current was made from, so a resync can prove it has nothing to do
 *   state/_exports/<id>.json        what an export of snapshot <id> held, for a later --since
 *   state/_history.json             the daemon's recent sync records (status page)
 *   keys/                           the mirror's signing key (0600) and public key
 *   lock                            held by sync and gc
 */
export class Layout {
  constructor(readonly dataDir: string) {}

  get blobsDir(): string {
    return join(this.dataDir, 'blobs', 'sha256');
  }
  blob(sha256: string): string {
    return join(this.blobsDir, sha256.slice(0, 2), sha256);
  }
  get partialDir(): string {
    return join(this.dataDir, 'partial');
  }
  partial(sha256: string): string {
    return join(this.partialDir, `${sha256}.part`);
  }
  get quarantineDir(): string {
    return join(this.dataDir, 'quarantine');
  }
  get snapshotsDir(): string {
    return join(this.dataDir, 'snapshots');
  }
  snapshot(id: string): string {
    return join(this.snapshotsDir, id);
  }
  get manifestsDir(): string {
    return join(this.dataDir, 'manifests');
  }
  manifest(id: string): string {
    return join(this.manifestsDir, `${id}.json`);
  }
  get current(): string {
    return join(this.dataDir, 'current');
  }
  get bootloaders(): string {
    return join(this.dataDir, 'bootloaders');
  }
  get bootloadersStore(): string {
    return join(this.dataDir, 'bootloaders.d');
  }
  get stateDir(): string {
    return join(this.dataDir, 'state');
  }
  state(source: string): string {
    return join(this.stateDir, `${source}.json`);
  }
  /** Source names cannot start with "_", so this never clashes with a source's state. */
  get wantedFile(): string {
    return join(this.stateDir, '_wanted.json');
  }
  get holdFile(): string {
    return join(this.stateDir, '_hold.json');
  }
  get unchangedFile(): string {
    return join(this.stateDir, '_unchanged.json');
  }
  exportRecord(id: string): string {
    return join(this.stateDir, '_exports', `${id}.json`);
  }

  /** The daemon's recent sync records, so the status page keeps them across restarts. */
  get historyFile(): string {
    return join(this.stateDir, '_history.json');
  }
  get keysDir(): string {
    return join(this.dataDir, 'keys');
  }
  get lockFile(): string {
    return join(this.dataDir, 'lock');
  }
  get tmpDir(): string {
    return join(this.dataDir, 'tmp');
  }
}

export const SHA256_RE = /^[0-9a-f]{64}$/;
