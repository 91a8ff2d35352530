import { mkdir, readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../store/fsutil.js';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { SigningKeyError } from '../errors.js';

export { SigningKeyError };

export interface SigningKey {
  readonly privateKey: openpgp.PrivateKey;
  readonly publicKey: openpgp.PublicKey;
  readonly fingerprint: string;
  /** Where it came from: the configured file or the generated one. */
  readonly file: string;
}

export const GENERATED_KEY_FILE = 'signing-key.asc';
export const PUBLIC_BINARY_FILE = 'public.gpg';
export const PUBLIC_ARMORED_FILE = 'public.asc';

/**
 * The mirror's own key: the configured one, or an ed25519 v4 key generated
 * once into keysDir (v4 because gpg 2.2 on MAAS hosts rejects v6 keys).
 * The public key is (re)written beside it in both forms on every load, so
 * `keys/public.gpg` always matches what signs the tree.
 */
export async function loadOrCreateSigningKey(
  keysDir: string,
  configured: string | undefined,
  passphrase = process.env.MAAS_MIRROR_SIGNING_PASSPHRASE,
  /** The user id a generated key gets (publish.keyName); a configured key keeps its own. */
  keyName = 'maas-mirror signing key',
): Promise<SigningKey> {
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const file = configured ?? join(keysDir, GENERATED_KEY_FILE);
  let armored: string | undefined;
  try {
    armored = await readFile(file, 'utf8');
  } catch (err) {
    if (configured) {
      throw new SigningKeyError(`cannot read publish.signingKey ${file}: ${(err as Error).message}`);
    }
  }
  if (armored === undefined) {
    armored = await generate(file, keyName);
  }
  let privateKey: openpgp.PrivateKey;
  try {
    privateKey = await openpgp.readPrivateKey({ armoredKey: armored });
    if (!privateKey.isDecrypted()) {
      if (!passphrase) {
        throw new Error('the key is protected by a passphrase; set MAAS_MIRROR_SIGNING_PASSPHRASE');
      }
      privateKey = await openpgp.decryptKey({ privateKey, passphrase });
    }
  } catch (err) {
    throw new SigningKeyError(`${file} is not a usable armored OpenPGP private key: ${(err as Error).message}`);
  }
  if (privateKey.keyPacket.version !== 4) {
    throw new SigningKeyError(
      `${file} is a v${privateKey.keyPacket.version} key; MAAS hosts run gpg 2.2, which verifies v4 keys only. Use an RSA or ed25519 v4 key`,
    );
  }
  const publicKey = privateKey.toPublic();
  await writePublic(keysDir, publicKey);
  return { privateKey, publicKey, fingerprint: privateKey.getFingerprint().toUpperCase(), file };
}

async function generate(file: string, keyName: string): Promise<string> {
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name: keyName }],
    format: 'armored',
    config: { v6Keys: false },
  });
  await writeFileAtomic(file, privateKey, { mode: 0o600 });
  return privateKey;
}

async function writePublic(keysDir: string, key: openpgp.PublicKey): Promise<void> {
  await writeFileAtomic(join(keysDir, PUBLIC_BINARY_FILE), key.write(), { unlessSame: true });
  await writeFileAtomic(join(keysDir, PUBLIC_ARMORED_FILE), key.armor(), { unlessSame: true });
}


export function exportPublic(key: SigningKey, armor: boolean): Buffer {
  return armor ? Buffer.from(key.publicKey.armor()) : Buffer.from(key.publicKey.write());
}
