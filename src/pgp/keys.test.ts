import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportPublic, GENERATED_KEY_FILE, loadOrCreateSigningKey, PUBLIC_BINARY_FILE, SigningKeyError } from './keys.js';
import { clearsign } from './sign.js';
import { verifyClearsigned } from './verify.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mm-keys-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('the signing key', () => {
  it('is generated once as an ed25519 v4 key, private part mode 0600, and reused', async () => {
    const a = await loadOrCreateSigningKey(join(dir, 'keys'), undefined);
    expect(a.privateKey.keyPacket.version).toBe(4);
    expect(a.privateKey.getAlgorithmInfo()).toMatchObject({ algorithm: 'eddsaLegacy' });
    expect((await stat(join(dir, 'keys', GENERATED_KEY_FILE))).mode & 0o777).toBe(0o600);
    const b = await loadOrCreateSigningKey(join(dir, 'keys'), undefined);
    expect(b.fingerprint).toBe(a.fingerprint);
    // The binary public key beside it is the one that verifies what the key signs.
    const pub = await openpgp.readKey({ binaryKey: await readFile(join(dir, 'keys', PUBLIC_BINARY_FILE)) });
    const signed = await clearsign('{}\n', a.privateKey);
    await expect(verifyClearsigned(signed, { file: 'k', keys: [pub] }, 'u')).resolves.toMatchObject({ text: '{}\n' });
    expect(exportPublic(a, true).toString()).toContain('BEGIN PGP PUBLIC KEY BLOCK');
  });

  it('uses a configured armored key, and refuses what MAAS could not verify', async () => {
    const { privateKey } = await openpgp.generateKey({ type: 'rsa', rsaBits: 2048, userIDs: [{ name: 'site key' }], format: 'armored' });
    await writeFile(join(dir, 'site.asc'), privateKey);
    const k = await loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'site.asc'));
    expect(k.privateKey.getAlgorithmInfo().algorithm).toBe('rsaEncryptSign');

    const v6 = await openpgp.generateKey({ type: 'curve25519', userIDs: [{ name: 'v6' }], format: 'armored', config: { v6Keys: true } });
    await writeFile(join(dir, 'v6.asc'), v6.privateKey);
    await expect(loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'v6.asc'))).rejects.toThrow(/v6 key; MAAS hosts run gpg 2.2/);

    await writeFile(join(dir, 'junk.asc'), 'not a key');
    await expect(loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'junk.asc'))).rejects.toBeInstanceOf(SigningKeyError);
    await expect(loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'missing.asc'))).rejects.toThrow(/cannot read publish.signingKey/);
  });

  it('unlocks a passphrase-protected key only with the passphrase', async () => {
    const { privateKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'p' }], passphrase: 'correct horse', format: 'armored' });
    await writeFile(join(dir, 'p.asc'), privateKey);
    await expect(loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'p.asc'), undefined)).rejects.toThrow(/MAAS_MIRROR_SIGNING_PASSPHRASE/);
    const k = await loadOrCreateSigningKey(join(dir, 'keys'), join(dir, 'p.asc'), 'correct horse');
    expect(k.privateKey.isDecrypted()).toBe(true);
  });
});
