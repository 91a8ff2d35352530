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
  // Given as a stream of whole lines and read through: openpgp.js then hashes it as it goes, where the
  // whole text made three copies of it as bytes (12 MB each for a products file of 10,000 products).
  const message = await openpgp.createMessage({ text: ReadableStream.from(linePieces(parts.text, PIECE_CHARS)) });
  const result = await openpgp.verify({ message, signature, verificationKeys: keyring.keys, expectSigned: false });
  for await (const _ of result.data as ReadableStream<string>) {
    // Only read through: the signatures settle once the text has been hashed.
  }
  const signers: string[] = [];
  const failures: string[] = [];
  let bad = false;
  for (const sig of result.signatures) {
    const keyId = sig.keyID.toHex().toUpperCase();
    try {
      await sig.verified;
      signers.push(keyId);
    } catch (err) {
      const msg = (err as Error).message;
      const unknown = /Could not find signing key/i.test(msg);
      // A signature by a key we trust that does not verify fails the file, whatever else signed it (as gpgv does).
      bad ||= !unknown;
      failures.push(
        unknown
          ? `signed by key ${keyId}, which is not in keyring ${keyring.file} (it holds ${fingerprints(keyring).join(', ') || 'no keys'})`
          : `signature by key ${keyId} does not verify (${msg}): the file was altered or corrupted`,
      );
    }
  }
  if (signers.length === 0 || bad) {
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

/** Characters of text hashed at a time, in whole lines. */
const PIECE_CHARS = 256 * 1024;

/** The text in slices of at least `size` characters (the last may be shorter), each ending after a LF. */
function* linePieces(text: string, size: number): Generator<string> {
  for (let at = 0; at < text.length; ) {
    const lf = text.indexOf('\n', at + size - 1);
    const end = lf === -1 ? text.length : lf + 1;
    yield text.slice(at, end);
    at = end;
  }
}

interface Cleartext {
  /** The signed text, dash-escapes undone, trailing blanks cut, lines ending in LF. */
  readonly text: string;
  /** Hash algorithms the "Hash:" armor headers name (lower case). */
  readonly hashes: readonly string[];
  /** From the "-----BEGIN PGP SIGNATURE-----" line on. */
  readonly armoredSignature: string;
}

/**
 * An armor line. Lines end at LF only, as for gpg (RFC 4880): a JS `m` flag would also end them at
 * U+2028/U+2029 and at a lone CR, which may sit inside a JSON string.
 */
const ARMOR_LINE = /(^|\n)(-----[^\n-]+-----)[ \t]*(?=\n|$)/;
const BLANK = /^[ \t]*$/;

/** The first armor line in `s`: where it starts and what it says. */
function armorLine(s: string): { index: number; line: string } | undefined {
  const m = ARMOR_LINE.exec(s);
  return m ? { index: m.index + m[1]!.length, line: m[2]! } : undefined;
}

/**
 * The parts of a clear-signed message, read as openpgp.js's own reader reads them (CRs dropped,
 * trailing blanks cut, "- " unescaped, the text ending at the next armor line), in a few passes
 * over the whole string rather than line by line: a products file of 10,000 products is 12 MB, and
 * the line-by-line reader took seconds and several copies of it.
 */
export function splitCleartext(armored: string): Cleartext {
  // CRLF line ends read as LF; a CR anywhere else is text, and signed as such.
  const input = armored.includes('\r') ? armored.replace(/\r\n/g, '\n') : armored;
  const begin = armorLine(input);
  if (!begin || begin.line !== '-----BEGIN PGP SIGNED MESSAGE-----') throw new Error('no "-----BEGIN PGP SIGNED MESSAGE-----" line');
  const beginEnd = input.indexOf('\n', begin.index);
  let at = beginEnd === -1 ? input.length + 1 : beginEnd + 1;
  const hashes: string[] = [];
  for (;;) {
    if (at > input.length) throw new Error('the armor headers never end');
    const eol = input.indexOf('\n', at);
    const line = input.slice(at, eol === -1 ? input.length : eol).trimEnd();
    at = eol === -1 ? input.length + 1 : eol + 1;
    if (BLANK.test(line)) break;
    if (armorLine(line)) throw new Error('the blank line after the armor headers is missing');
    const hash = /^Hash: (.+)$/.exec(line);
    if (!hash) throw new Error('only "Hash" headers are allowed in a clear-signed message');
    hashes.push(...hash[1]!.replace(/\s/g, '').toLowerCase().split(','));
  }
  const rest = input.slice(at);
  const end = armorLine(rest);
  if (!end) throw new Error('no signature follows the text');
  // The newline before the armor line ends the last line; it is not part of the text.
  const body = rest.slice(0, Math.max(0, end.index - 1));
  // Dash-escapes undone, then trailing blanks cut, as gpg does. The lookbehind starts a match only at
  // the start of a run of blanks: without it a long run inside a line costs quadratic time.
  const text = body.replace(/(^|\n)- /g, '$1').replace(/(?<![ \t])[ \t]+(?=\n|$)/g, '');
  return { text, hashes, armoredSignature: rest.slice(end.index) };
}

/** A "Hash:" header names every hash the signatures use: a signature must not claim one the header does not. */
function checkHashHeaders(hashes: readonly string[], signature: openpgp.Signature): void {
  // A binary signature over some file of the signer's is not a signature of this text.
  for (const packet of signature.packets) {
    if (packet.signatureType !== openpgp.enums.signature.text) throw new Error(`a clear signature must be a text signature (type 0x01), not type ${packet.signatureType ?? '?'}`);
  }
  if (hashes.length === 0) return;
  for (const packet of signature.packets) {
    const name = Object.entries(openpgp.enums.hash).find(([, id]) => id === packet.hashAlgorithm)?.[0];
    if (!name || !hashes.includes(name)) throw new Error(`the signature uses hash ${name ?? packet.hashAlgorithm}, which the "Hash" header does not name`);
  }
}
