import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKeyring, type Keyring } from './keyring.js';
import { clearsign, clearsignPieces, detachSignPieces } from './sign.js';
import { verifyClearsigned } from './verify.js';

const TEXTS = [
  '{\n "a": 1,\n "b": "- x"\n}\n',
  'trailing blanks   \nand tabs\t\t\n- dash\nend',
  'windows\r\nline\r\nends\r\n',
  'ünïcödé ✓ 日本 😀\n{"a": "x\u2028-y"}\n',
];

/** The text cut every `n` characters: inside lines, runs of blanks, CRLF pairs and surrogate pairs. */
function cutEvery(text: string, n: number): () => string[] {
  return () => Array.from({ length: Math.ceil(text.length / n) }, (_, i) => text.slice(i * n, (i + 1) * n));
}

async function collect(pieces: AsyncIterable<string>): Promise<string> {
  const out: string[] = [];
  for await (const p of pieces) out.push(p);
  return out.join('');
}

describe('signing text given in pieces', () => {
  let dir: string;
  let key: openpgp.PrivateKey;
  let keyring: Keyring;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mm-sign-'));
    ({ privateKey: key } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'me' }], format: 'object' }));
    await writeFile(join(dir, 'me.gpg'), key.toPublic().write());
    keyring = await loadKeyring(join(dir, 'me.gpg'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('clear-signs the same document whatever the pieces, and it verifies to the text', async () => {
    for (const text of TEXTS) {
      const whole = await clearsign(text, key);
      const expected = (await verifyClearsigned(whole, keyring, 'u')).text;
      for (const n of [1, 2, 3, 7, 1000]) {
        const signed = await collect(clearsignPieces(cutEvery(text, n), key));
        const body = (s: string) => s.slice(0, s.indexOf('-----BEGIN PGP SIGNATURE-----'));
        expect(body(signed), JSON.stringify([text, n])).toBe(body(whole));
        expect((await verifyClearsigned(signed, keyring, 'u')).text).toBe(expected);
      }
    }
  });

  it('signs the UTF-8 bytes of the joined pieces, even with a surrogate pair cut in two', async () => {
    for (const text of TEXTS) {
      for (const n of [1, 3, 1000]) {
        const armored = await detachSignPieces(cutEvery(text, n), key);
        const result = await openpgp.verify({
          message: await openpgp.createMessage({ binary: Buffer.from(text, 'utf8') }),
          signature: await openpgp.readSignature({ armoredSignature: armored }),
          verificationKeys: key.toPublic(),
        });
        await expect(result.signatures[0]!.verified).resolves.toBe(true);
      }
    }
  });
});
