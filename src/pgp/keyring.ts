import { readFile } from 'node:fs/promises';
import * as openpgp from 'openpgp';
import { SignatureError } from '../errors.js';

export interface Keyring {
  readonly file: string;
  readonly keys: openpgp.PublicKey[];
}

const cache = new Map<string, Promise<Keyring>>();

/**
 * Reads a public keyring, binary (what gpgv and MAAS use) or armored. Both
 * forms occur in the wild, and operators should not have to convert.
 */
export function loadKeyring(file: string): Promise<Keyring> {
  let p = cache.get(file);
  if (!p) {
    p = readKeyring(file);
    cache.set(file, p);
    p.catch(() => cache.delete(file));
  }
  return p;
}

async function readKeyring(file: string): Promise<Keyring> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new SignatureError(`cannot read keyring ${file}: ${(err as Error).message}`, '', file);
  }
  const armored = bytes.subarray(0, 64).toString('latin1').includes('-----BEGIN PGP');
  try {
    const keys = armored
      ? await openpgp.readKeys({ armoredKeys: bytes.toString('utf8') })
      : await openpgp.readKeys({ binaryKeys: new Uint8Array(bytes) });
    return { file, keys: keys.map((k) => k.toPublic()) };
  } catch (err) {
    throw new SignatureError(
      `keyring ${file} holds no readable OpenPGP public key (${(err as Error).message}); ` +
        `give a binary (.gpg) or armored (.asc) public keyring`,
      '',
      file,
    );
  }
}

export function fingerprints(keyring: Keyring): string[] {
  return keyring.keys.map((k) => k.getFingerprint().toUpperCase());
}
