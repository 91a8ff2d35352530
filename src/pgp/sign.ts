import * as openpgp from 'openpgp';

/**
 * Clear-signs text. openpgp.js emits the `Hash:` armor header that the python
 * simplestreams reader relies on (it drops the line after BEGIN PGP SIGNED
 * MESSAGE); publish checks for it so a library change cannot slip through.
 */
export async function clearsign(text: string, key: openpgp.PrivateKey): Promise<string> {
  const message = await openpgp.createCleartextMessage({ text });
  const signed = await openpgp.sign({ message, signingKeys: key });
  const secondLine = signed.split('\n', 2)[1] ?? '';
  if (!secondLine.startsWith('Hash: ')) {
    throw new Error('clear-signed output lacks a "Hash:" header; simplestreams readers would break on it');
  }
  return signed;
}

/** Armored detached signature over the exact bytes (the `.json.gpg` files). */
export async function detachSign(bytes: Uint8Array, key: openpgp.PrivateKey): Promise<string> {
  const message = await openpgp.createMessage({ binary: bytes });
  return openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' });
}
