import * as openpgp from 'openpgp';

/**
 * Clear-signs text. openpgp.js emits the `Hash:` armor header that the python
 * simplestreams reader relies on (it drops the line after BEGIN PGP SIGNED
 * MESSAGE); publish checks for it so a library change cannot slip through.
 */
export async function clearsign(text: string, key: openpgp.PrivateKey): Promise<string> {
  // The cleartext framework (RFC 4880 §7), written as openpgp.js's own armor writes it: trailing
  // blanks are not signed, the text goes out dash-escaped with CRLF line ends. A detached signature
  // over that text is the clear signature: for a products file of 12 MB this takes a fraction of the
  // memory and time of openpgp.js's line-by-line cleartext message.
  // Lines end at LF only (a JS `m` flag would also end them at U+2028/U+2029); the lookbehind keeps a
  // long run of blanks inside a line from costing quadratic time.
  const canonical = text.replace(/(?<![ \t\r])[ \t\r]+(?=\n|$)/g, '');
  const armored = await openpgp.sign({ message: await openpgp.createMessage({ text: canonical }), signingKeys: key, detached: true });
  const signature = await openpgp.readSignature({ armoredSignature: armored });
  const hashes = [...new Set(signature.packets.map((p) => hashName(p.hashAlgorithm)))].join();
  const signed = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: ${hashes}\n\n${canonical.replace(/(^|\n)-/g, '$1- -').replace(/\n/g, '\r\n')}\n${armored}`;
  const secondLine = signed.split('\n', 2)[1] ?? '';
  if (!/^Hash: [A-Z0-9]+/.test(secondLine)) {
    throw new Error('clear-signed output lacks a "Hash:" header; simplestreams readers would break on it');
  }
  return signed;
}

/** The armor name of a hash algorithm ("SHA512"). */
function hashName(id: number | null): string {
  const name = Object.entries(openpgp.enums.hash).find(([, v]) => v === id)?.[0];
  if (!name) throw new Error(`the signature uses unknown hash algorithm ${id}`);
  return name.toUpperCase();
}

/** Armored detached signature over the exact bytes (the `.json.gpg` files). */
export async function detachSign(bytes: Uint8Array, key: openpgp.PrivateKey): Promise<string> {
  const message = await openpgp.createMessage({ binary: bytes });
  return openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' });
}
