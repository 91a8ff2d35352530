import * as openpgp from 'openpgp';
import { utf8Pieces } from '../simplestreams/json-pieces.js';

/**
 * A text given as pieces, produced afresh on each call: a products file of 10,000 products is
 * 12 MB, and signing it twice and writing it three times from one string held copies of it at once.
 */
export type TextPieces = () => Iterable<string>;

/**
 * Clear-signs text. openpgp.js emits the `Hash:` armor header that the python
 * simplestreams reader relies on (it drops the line after BEGIN PGP SIGNED
 * MESSAGE); publish checks for it so a library change cannot slip through.
 */
export async function clearsign(text: string, key: openpgp.PrivateKey): Promise<string> {
  const out: string[] = [];
  for await (const piece of clearsignPieces(() => [text], key)) out.push(piece);
  return out.join('');
}

/**
 * The clear-signed document of a text given as pieces, in pieces: the text is read twice (once
 * for the signature, once to write it out), never held whole.
 *
 * The cleartext framework (RFC 4880 §7), written as openpgp.js's own armor writes it: trailing
 * blanks are not signed, the text goes out dash-escaped with CRLF line ends. A detached signature
 * over that text is the clear signature: for a products file of 12 MB this takes a fraction of the
 * memory and time of openpgp.js's line-by-line cleartext message.
 */
export async function* clearsignPieces(text: TextPieces, key: openpgp.PrivateKey): AsyncGenerator<string> {
  const armored = await readAll(
    await openpgp.sign({ message: await openpgp.createMessage({ text: ReadableStream.from(canonicalLines(text())) }), signingKeys: key, detached: true }),
  );
  const signature = await openpgp.readSignature({ armoredSignature: armored });
  const hashes = [...new Set(signature.packets.map((p) => hashName(p.hashAlgorithm)))].join();
  if (!/^[A-Z0-9]+/.test(hashes)) {
    throw new Error('clear-signed output lacks a "Hash:" header; simplestreams readers would break on it');
  }
  yield `-----BEGIN PGP SIGNED MESSAGE-----\nHash: ${hashes}\n\n`;
  for (const lines of canonicalLines(text())) yield lines.replace(/(^|\n)-/g, '$1- -').replace(/\n/g, '\r\n');
  yield `\n${armored}`;
}

/**
 * The text as signed, in pieces of whole lines (the last may lack its LF): trailing blanks cut.
 * Lines end at LF only (a JS `m` flag would also end them at U+2028/U+2029); the lookbehind keeps a
 * long run of blanks inside a line from costing quadratic time.
 */
function* canonicalLines(pieces: Iterable<string>): Generator<string> {
  const cut = (s: string) => s.replace(/(?<![ \t\r])[ \t\r]+(?=\n|$)/g, '');
  let carry = '';
  for (const piece of pieces) {
    const s = carry + piece;
    const end = s.lastIndexOf('\n') + 1;
    carry = s.slice(end);
    if (end > 0) yield cut(s.slice(0, end));
  }
  if (carry !== '') yield cut(carry);
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

/** Armored detached signature over the UTF-8 bytes of a text given as pieces, never held whole. */
export async function detachSignPieces(text: TextPieces, key: openpgp.PrivateKey): Promise<string> {
  const message = await openpgp.createMessage({ binary: ReadableStream.from(utf8Pieces(text())) });
  return readAll(await openpgp.sign({ message, signingKeys: key, detached: true, format: 'armored' }));
}

/** openpgp.js answers a streamed message with a stream. */
async function readAll(out: string | ReadableStream<string>): Promise<string> {
  if (typeof out === 'string') return out;
  const parts: string[] = [];
  for await (const part of out) parts.push(part);
  return parts.join('');
}
