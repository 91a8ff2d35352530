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
  let parts: Cleartext;
  let signature: openpgp.Signature;
  try {
    parts = splitCleartext(armored);
    signature = await openpgp.readSignature({ armoredSignature: parts.armoredSignature });
    checkHashHeaders(parts.hashes, signature);
  } catch (err) {
    throw new SignatureError(
      `${url} is not an OpenPGP clear-signed document (${(err as Error).message}); ` +
        `the upstream may not sign this file: point the source at a signed mirror, or set verify: false for an unsigned .json mirror`,
      url,
      keyring.file,
    );
  }
  // The literal's bytes are the text with every line end made CRLF: what a clear signature is made over (RFC 4880 §7.1).
  const message = await openpgp.createMessage({ text: parts.text });
  const result = await openpgp.verify({ message, signature, verificationKeys: keyring.keys, expectSigned: false });
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
  return { text: parts.text, signers };
}

interface Cleartext {
  /** The signed text, dash-escapes undone, trailing blanks cut, lines ending in LF. */
  readonly text: string;
  /** Hash algorithms the "Hash:" armor headers name (lower case). */
  readonly hashes: readonly string[];
  /** From the "-----BEGIN PGP SIGNATURE-----" line on. */
  readonly armoredSignature: string;
}

const ARMOR_LINE = /^-----[^-]+-----[ \t]*$/m;
const BLANK = /^[ \f\t\u00a0\u2000-\u200a\u202f\u205f\u3000]*$/;

/**
 * The parts of a clear-signed message, read as openpgp.js's own reader reads them (CRs dropped,
 * trailing blanks cut, "- " unescaped, the text ending at the next armor line), in a few passes
 * over the whole string rather than line by line: a products file of 10,000 products is 12 MB, and
 * the line-by-line reader took seconds and several copies of it.
 */
export function splitCleartext(armored: string): Cleartext {
  const input = armored.includes('\r') ? armored.replace(/\r/g, '') : armored;
  const begin = ARMOR_LINE.exec(input);
  if (!begin || begin[0].trimEnd() !== '-----BEGIN PGP SIGNED MESSAGE-----') throw new Error('no "-----BEGIN PGP SIGNED MESSAGE-----" line');
  let at = begin.index + begin[0].length + 1;
  const hashes: string[] = [];
  for (;;) {
    if (at > input.length) throw new Error('the armor headers never end');
    const eol = input.indexOf('\n', at);
    const line = input.slice(at, eol === -1 ? input.length : eol).trimEnd();
    at = eol === -1 ? input.length + 1 : eol + 1;
    if (BLANK.test(line)) break;
    if (ARMOR_LINE.test(line)) throw new Error('the blank line after the armor headers is missing');
    const hash = /^Hash: (.+)$/.exec(line);
    if (!hash) throw new Error('only "Hash" headers are allowed in a clear-signed message');
    hashes.push(...hash[1]!.replace(/\s/g, '').toLowerCase().split(','));
  }
  const rest = input.slice(at);
  const end = ARMOR_LINE.exec(rest);
  if (!end) throw new Error('no signature follows the text');
  // The newline before the armor line ends the last line; it is not part of the text.
  const body = rest.slice(0, Math.max(0, end.index - 1));
  const text = body.replace(/[ \t]+$/gm, '').replace(/^- /gm, '');
  return { text, hashes, armoredSignature: rest.slice(end.index) };
}

/** A "Hash:" header names every hash the signatures use: a signature must not claim one the header does not. */
function checkHashHeaders(hashes: readonly string[], signature: openpgp.Signature): void {
  if (hashes.length === 0) return;
  for (const packet of signature.packets) {
    const name = Object.entries(openpgp.enums.hash).find(([, id]) => id === packet.hashAlgorithm)?.[0];
    if (!name || !hashes.includes(name)) throw new Error(`the signature uses hash ${name ?? packet.hashAlgorithm}, which the "Hash" header does not name`);
  }
}
