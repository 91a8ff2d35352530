import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignatureError } from '../errors.js';
import { loadKeyring, type Keyring } from './keyring.js';
import { clearsign } from './sign.js';
import { verifyClearsigned } from './verify.js';

const run = promisify(execFile);

/** Texts whose clear-signed form needs dash-escaping, trailing-blank cutting or line-end care. */
const TRICKY = [
  '{"a": 1}\n',
  'no newline at the end',
  'trailing blanks   \nand tabs\t\t\nend\n',
  '- a line that starts with a dash\n-----BEGIN PGP SIGNATURE-----\n--- more\n',
  'windows\r\nline\r\nends\r\n',
  '\n\nblank lines around\n\n\n',
  'ünïcödé ✓ 日本\n',
  // Not line ends for gpg: a dash after U+2028 must not be escaped, blanks before it not cut.
  '{"a": "x\u2028-y", "b": "z  \u2029- w"}\n',
  '- \t\n',
];

describe('verifyClearsigned', () => {
  let dir: string;
  let key: openpgp.PrivateKey;
  let keyring: Keyring;
  let other: openpgp.PrivateKey;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-verify-'));
    ({ privateKey: key } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'up' }], format: 'object' }));
    ({ privateKey: other } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'other' }], format: 'object' }));
    await writeFile(join(dir, 'up.gpg'), key.toPublic().write());
    keyring = await loadKeyring(join(dir, 'up.gpg'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('returns the text openpgp.js itself reads out of the message, for texts that need escaping', async () => {
    for (const text of TRICKY) {
      const signed = await clearsign(text, key);
      const got = await verifyClearsigned(signed, keyring, 'u');
      const reference = await openpgp.readCleartextMessage({ cleartextMessage: signed });
      expect(got.text, JSON.stringify(text)).toBe(reference.getText());
      expect(got.signers).toEqual([key.getKeyID().toHex().toUpperCase()]);
    }
  });

  it('clear-signs texts that need escaping so that gpgv accepts them and prints back the text', async () => {
    for (const [i, text] of TRICKY.entries()) {
      const file = join(dir, `tricky-${i}.sjson`);
      await writeFile(file, await clearsign(text, key));
      const out = await run('gpgv', ['--keyring', join(dir, 'up.gpg'), '--output', '-', file], { encoding: 'buffer' });
      // gpgv (exit 0: a good signature) prints the signed text as signed: CRLF line ends, no trailing blanks.
      const printed = out.stdout.toString('utf8').replace(/\r\n/g, '\n');
      expect(printed.startsWith(text.replace(/[ \t\r]+(?=\n|$)/g, '').replace(/\r\n/g, '\n')), JSON.stringify([text, printed])).toBe(true);
    }
  });

  it('reads a message clear-signed by gpg, with CRLF line ends in transit', async () => {
    const home = join(dir, 'gnupg');
    const env = { ...process.env, GNUPGHOME: home };
    await run('mkdir', ['-m', '700', home]);
    await run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', 'gpg-signer', 'ed25519', 'sign', 'never'], { env });
    await run('gpg', ['--batch', '--export', '--output', join(dir, 'gpg.gpg')], { env });
    const text = '{\n "products": {}\n}\n- dash\ntrailing  \n';
    await writeFile(join(dir, 'doc.json'), text);
    await run('gpg', ['--batch', '--yes', '--clearsign', '--output', join(dir, 'doc.sjson'), join(dir, 'doc.json')], { env });
    const signed = await readFile(join(dir, 'doc.sjson'), 'utf8');
    const ring = await loadKeyring(join(dir, 'gpg.gpg'));
    // The line end before the signature belongs to the armor, not to the text.
    const expected = (await openpgp.readCleartextMessage({ cleartextMessage: signed })).getText();
    expect(expected).toBe('{\n "products": {}\n}\n- dash\ntrailing');
    expect((await verifyClearsigned(signed, ring, 'u')).text).toBe(expected);
    expect((await verifyClearsigned(signed.replace(/\n/g, '\r\n'), ring, 'u')).text).toBe(expected);
  });

  it('refuses an altered text, another key, and a message that is not clear-signed', async () => {
    const signed = await clearsign('{"size": 100}\n', key);
    await expect(verifyClearsigned(signed.replace('100', '101'), keyring, 'u')).rejects.toThrow(/does not verify/);
    await expect(verifyClearsigned(await clearsign('{"size": 100}\n', other), keyring, 'u')).rejects.toThrow(/not in keyring/);
    await expect(verifyClearsigned('{"size": 100}\n', keyring, 'u')).rejects.toThrow(/not an OpenPGP clear-signed document/);
    await expect(verifyClearsigned(signed.replace(/-----BEGIN PGP SIGNATURE-----[^]*$/, ''), keyring, 'u')).rejects.toBeInstanceOf(SignatureError);
  });

  it('refuses text that escapes the signature: an unescaped armor line, an extra header, a Hash header the signature does not use', async () => {
    const signed = await clearsign('a\n-----BEGIN PGP SIGNATURE-----\nb\n', key);
    const escaped = /\n- (-----BEGIN PGP SIGNATURE-----\r?\nb)/;
    expect(signed).toMatch(escaped);
    // Unescaped, the line would end the text early: what is left is not what was signed.
    await expect(verifyClearsigned(signed.replace(escaped, '\n$1'), keyring, 'u')).rejects.toBeInstanceOf(SignatureError);
    await expect(verifyClearsigned(signed.replace(/^Hash: .*$/m, '$&\nComment: x'), keyring, 'u')).rejects.toThrow(/only "Hash" headers/);
    await expect(verifyClearsigned(signed.replace(/^Hash: .*$/m, 'Hash: MD5'), keyring, 'u')).rejects.toThrow(/does not name/);
    await expect(verifyClearsigned(signed.replace(/^Hash: .*\n\n/m, '$&x\n'), keyring, 'u')).rejects.toBeInstanceOf(SignatureError);
    // The Hash header is optional.
    expect((await verifyClearsigned(signed.replace(/^Hash: .*\n/m, ''), keyring, 'u')).text).toBe('a\n-----BEGIN PGP SIGNATURE-----\nb\n');
  });

  it('takes linear time on a long run of blanks inside a line, before any signature is checked', async () => {
    const hostile = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n{${' '.repeat(400_000)}}\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n`;
    await expect(verifyClearsigned(hostile, keyring, 'u')).rejects.toBeInstanceOf(SignatureError);
  }, 30_000);

  it('refuses a binary signature wrapped as a clear signature: it signs some file of the signer, not this text', async () => {
    const text = '{"a": 1}\n';
    const binary = await openpgp.sign({ message: await openpgp.createMessage({ binary: new TextEncoder().encode(text) }), signingKeys: key, detached: true });
    const wrapped = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n${text}${binary}`;
    await expect(verifyClearsigned(wrapped, keyring, 'u')).rejects.toBeInstanceOf(SignatureError);
  });

  it('checks every byte of a long text, which is hashed in pieces: a change far into it fails the file', async () => {
    const lines = Array.from({ length: 40_000 }, (_, i) => `  "p${i}": {"label": "stable", "n": ${i}},`);
    const text = `{\n${lines.join('\n')}\n "end": true\n}`;
    const signed = await clearsign(text, key);
    expect((await verifyClearsigned(signed, keyring, 'u')).text).toBe(text);
    const far = signed.replace('"n": 39990}', '"n": 39991}');
    expect(far).not.toBe(signed);
    await expect(verifyClearsigned(far, keyring, 'u')).rejects.toThrow(/does not verify/);
    expect((await verifyClearsigned(await clearsign('', key), keyring, 'u')).text).toBe('');
  });
});
