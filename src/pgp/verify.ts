import * as openpgp from 'openpgp';
import { SignatureError } from '../errors.js';
import { fingerprints, type Keyring } from './keyring.js';

export interface VerifiedText {
  /** The signed text: exactly what the signer signed. */
  readonly text: string;
  /** Long key ids that made good signatures. */
  readonly signers: string[];
}

/**
 * Checks an OpenPGP clear-signed document against a keyring and returns the
 * signed text. Anything else (not clear-signed, a bad signature, a key the
 * keyring does not hold) is a SignatureError naming the key and keyring.
 */
export async function verifyClearsigned(armored: string, keyring: Keyring, url: string): Promise<VerifiedText> {
  let message: openpgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: armored });
  } catch (err) {
    throw new SignatureError(
      `${url} is not an OpenPGP clear-signed document (${(err as Error).message}); ` +
        `the upstream may not sign this file: point the source at a signed mirror, or set verify: false for an unsigned .json mirror`,
      url,
      keyring.file,
    );
  }
  const result = await openpgp.verify({ message, verificationKeys: keyring.keys, expectSigned: false });
  const signers: string[] = [];
  const failures: string[] = [];
  for (const sig of result.signatures) {
    const keyId = sig.keyID.toHex().toUpperCase();
    try {
      await sig.verified;
      signers.push(keyId);
    } catch (err) {
      const msg = (err as Error).message;
      failures.push(
        /Could not find signing key/i.test(msg)
          ? `signed by key ${keyId}, which is not in keyring ${keyring.file} (it holds ${fingerprints(keyring).join(', ') || 'no keys'})`
          : `signature by key ${keyId} does not verify (${msg}): the file was altered or corrupted`,
      );
    }
  }
  if (signers.length === 0) {
    const why = failures.length > 0 ? failures.join('; ') : 'it carries no signature';
    throw new SignatureError(
      `${url}: ${why}. Check the source's keyring setting, or whether the upstream changed its key`,
      url,
      keyring.file,
      result.signatures.map((s) => s.keyID.toHex().toUpperCase()),
    );
  }
  return { text: message.getText(), signers };
}
