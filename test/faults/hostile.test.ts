import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, type Daemon } from '../../src/cli/daemon.js';
import { silentLogger } from '../../src/log.js';
import { tftpGet } from '../../src/tftp/client.js';
import { decodePacket, encodeRequest } from '../../src/tftp/packet.js';
import { makeEnv, type Env } from '../helpers/env.js';
import { prng } from '../helpers/prng.js';
import { rawGet, rawHttp } from '../helpers/raw-http.js';
import { cli, mapLimit, sha256, sleep, waitFor, walkFiles, writeJsonConfig } from './helpers.js';

/**
 * Hostile clients and bad input against the real daemon (HTTP, TFTP, ops
 * routes) and the real CLI: traversal in every spelling, oversized
 * requests, fuzzed TFTP, configuration mistakes, a corrupt blob.
 */

const PREFIX = '/maas/images/ephemeral-v3/stable/';
const MARKER = `TOPSECRET-${randomBytes(6).toString('hex')}`;
const SECRETS = [MARKER, 'PRIVATE KEY', 'root:x:0:0'];
const NOBLE = 'com.ubuntu.maas.stable:v3:boot:24.04:amd64:ga-24.04';

let env: Env;
let daemon: Daemon;
let base: string;
let configFile: string;

beforeAll(async () => {
  env = await makeEnv();
  // Secrets beside the dataDir, and one inside it, outside the tree.
  await writeFile(join(env.dir, 'SECRET.txt'), MARKER);
  await mkdir(env.dataDir, { recursive: true });
  await writeFile(join(env.dataDir, 'SECRET.txt'), MARKER);
  daemon = await startDaemon({
    config: env.config([{}], { schedule: { onStart: false, interval: '1h', jitter: '0s' } }),
    logger: silentLogger(),
    httpListen: [{ host: '127.0.0.1', port: 0 }],
    tftpListen: [{ host: '127.0.0.1', port: 0 }],
    retryBaseMs: 5,
    drainMs: 500,
  });
  expect((await daemon.ops.coordinator.start('initial').done).result).toBe('ok');
  base = `http://127.0.0.1:${daemon.http.addresses[0]!.port}`;
  configFile = await writeJsonConfig(join(env.dir, 'hostile.yaml'), {
    dataDir: env.dataDir,
    sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }],
    download: { concurrency: 4, retries: 2, connectTimeout: '2s', idleTimeout: '2s' },
    tftp: { enabled: false },
  });
});

afterAll(async () => {
  await daemon?.stop();
  await env?.close();
});

const raw = (head: string, timeoutMs?: number) => rawHttp(daemon.http.addresses[0]!, head, timeoutMs);

const get = (path: string) => rawGet(daemon.http.addresses[0]!, path);

function newestItem(productId: string, name: string) {
  const versions = env.upstream.product(productId).doc.products[productId]!.versions;
  return versions[Object.keys(versions).sort().at(-1)!]!.items[name]!;
}

describe('HTTP: traversal in every spelling', () => {
  const DOTS = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '%c0%ae%c0%ae', '..%00', '%2e%2e%00', '..;', '...', '..%20'];
  const SEPS = ['/', '%2f', '%2F', '\\', '%5c', '%5C', '//', '/./', '%252f', '%00/'];
  const PREFIXES = ['/', PREFIX, `${PREFIX}streams/v1/`, '/images/', '/images/0123456789abcdef/', '/bootloaders/uefi/amd64/', '/api/', '/api/v1/', '/metrics/', '/keyring.gpg/', '//', '/\\'];
  const TARGETS = ['SECRET.txt', 'data/SECRET.txt', 'keys/signing-key.asc', 'data/keys/signing-key.asc', 'etc/passwd'];

  function paths(): string[] {
    const out = new Set<string>();
    for (const p of PREFIXES) for (const d of DOTS) for (const s of SEPS) for (const depth of [1, 3, 6, 12]) {
      out.add(p + `${d}${s}`.repeat(depth) + TARGETS[(depth + d.length + s.length) % TARGETS.length]);
    }
    for (const t of TARGETS) {
      out.add(`/${'../'.repeat(8)}${t}`);
      out.add(`${PREFIX}${'..%2f'.repeat(8)}${t}`);
      out.add(`${PREFIX}streams/v1/..%5c..%5c..%5c..%5c${t.replace(/\//g, '%5c')}`);
      out.add(`http://localhost/${'../'.repeat(6)}${t}`);
      out.add(`${PREFIX}${t}%00.json`);
      out.add(`/${t}`);
      out.add(`/images/${'%2e%2e%2f'.repeat(6)}${t}`);
      out.add(`${PREFIX}//${'..//'.repeat(6)}${t}`);
    }
    out.add(`/${'a/'.repeat(4000)}`); // long, but under the header limit
    out.add(`${PREFIX}${'x'.repeat(8000)}`);
    out.add('/%00');
    out.add(`${PREFIX}streams%00/v1/index.json`);
    return [...out];
  }

  it('never answers 200 with a file from outside the tree, never leaks a secret, never errs with 5xx', async () => {
    const list = paths();
    expect(list.length).toBeGreaterThan(1400);
    const statuses = new Map<number, number>();
    await mapLimit(list, 64, async (p) => {
      const a = await get(p);
      for (const s of SECRETS) expect(a.text, p).not.toContain(s);
      expect(a.status, `${p} → ${a.status}`).not.toBe(200);
      expect(a.status, `${p} → ${a.status}`).toBeGreaterThanOrEqual(400);
      expect(a.status, `${p} → ${a.status}: ${a.text.slice(0, 300)}`).toBeLessThan(500);
      expect(a.text, p).not.toMatch(/\n\s+at [^\n]+:\d+:\d+/);
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    });
    // Still serving (control).
    expect((await get(`${PREFIX}streams/v1/index.json`)).status).toBe(200);
    console.log(`traversal: ${list.length} paths, statuses ${JSON.stringify([...statuses].sort())}`);
  });
});

describe('HTTP: oversized requests', () => {
  it('answers 431 to headers over 16 KiB, refuses an over-long path, and keeps serving', async () => {
    const big = await raw(`GET ${PREFIX}streams/v1/index.json HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\nConnection: close\r\n\r\n`);
    expect(big.status).toBe(431);
    const many = await raw(
      `GET ${PREFIX}streams/v1/index.json HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'b'.repeat(40)}\r\n`).join('')}Connection: close\r\n\r\n`,
    );
    expect(many.status).toBe(431);
    const longPath = await get(`${PREFIX}${'p/'.repeat(10_000)}index.json`);
    expect([414, 431]).toContain(longPath.status);
    const longish = await get(`${PREFIX}streams/v1/${'q'.repeat(12_000)}`);
    expect(longish.status).toBeGreaterThanOrEqual(400);
    expect(longish.status).toBeLessThan(500);
    expect((await get(`${PREFIX}streams/v1/index.json`)).status).toBe(200);
  });

  it('sets bounds on how long a client may take to send its request', () => {
    for (const s of daemon.http.servers) {
      expect(s.headersTimeout).toBeGreaterThan(0);
      expect(s.headersTimeout).toBeLessThanOrEqual(60_000);
    }
    // The whole-request bound is enforced per request (image uploads are bounded by progress instead).
    expect(daemon.http.requestTimeout).toBeGreaterThan(0);
    expect(daemon.http.requestTimeout).toBeLessThanOrEqual(300_000);
  });
});

describe('TFTP: malformed packets', () => {
  it('survives 5,000 fuzzed packets, never sends a byte from outside, refuses writes, and then serves a normal transfer', async () => {
    const tftp = daemon.tftpAddresses[0]!;
    const rand = prng(Number(process.env.FAULT_SEED) || 20251126);
    const pick = <T>(l: readonly T[]) => l[Math.floor(rand() * l.length)]!;
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    const u16 = (n: number) => {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(n & 0xffff);
      return b;
    };
    const z = (s: string | Buffer) => Buffer.concat([Buffer.from(s), Buffer.from([0])]);
    const names = ['../../SECRET.txt', '/etc/passwd', '..\\..\\SECRET.txt', '%2e%2e/%2e%2e/SECRET.txt', 'C:\\SECRET.txt', '....//....//SECRET.txt',
      'bootloaders/../../SECRET.txt', 'images/../../../SECRET.txt', `${'a/'.repeat(200)}x`, 'keys/signing-key.asc', '../keys/signing-key.asc', '', '\u0001\u0002'];
    const modes = ['octet', 'netascii', 'mail', 'OCTET', '', 'x'.repeat(300)];
    const options: [string, string][] = [['blksize', '0'], ['blksize', '7'], ['blksize', '65465'], ['blksize', '99999999999999999999'], ['blksize', '-1'], ['blksize', 'abc'],
      ['windowsize', '0'], ['windowsize', '65536'], ['tsize', '-5'], ['tsize', 'x'], ['timeout', '0'], ['timeout', '256'], ['multicast', ''], ['', ''], ['blksize', '']];
    const gen = (): Buffer => {
      switch (Math.floor(rand() * 10)) {
        case 0:
          return bytes(Math.floor(rand() * 600));
        case 1: // a request for a hostile name
          return Buffer.concat([u16(1), z(pick(names)), z(pick(modes))]);
        case 2: // a request with abusive options
          return Buffer.concat([u16(1), z(pick(names)), z('octet'), ...Array.from({ length: 1 + Math.floor(rand() * 40) }, () => Buffer.concat(pick(options).map(z)))]);
        case 3: // a write request
          return Buffer.concat([u16(2), z(`upload-${Math.floor(rand() * 1e6)}`), z('octet')]);
        case 4: // truncated requests: no NUL, no mode
          return Buffer.concat([u16(1), Buffer.from(pick(names))]).subarray(0, 2 + Math.floor(rand() * 20));
        case 5: // DATA, ACK, ERROR, OACK to the listening port
          return Buffer.concat([u16(3 + Math.floor(rand() * 4)), bytes(Math.floor(rand() * 40))]);
        case 6: // unknown opcodes
          return Buffer.concat([pick([u16(0), u16(7), u16(255), u16(65535)]), bytes(Math.floor(rand() * 30))]);
        case 7: // a valid request with one byte flipped
        {
          const b = encodeRequest('rrq', 'bootx64.efi', 'octet', [['blksize', '1468']]);
          const i = Math.floor(rand() * b.length);
          b[i] = b[i]! ^ (1 << Math.floor(rand() * 8));
          return b;
        }
        case 8:
          return pick([Buffer.alloc(0), Buffer.from([1]), Buffer.alloc(65000, 0x41), Buffer.concat([u16(1), Buffer.alloc(4000, 0x61)])]);
        default: // a name with no terminator and huge option lists
          return Buffer.concat([u16(1), z('bootx64.efi'), z('octet'), ...Array.from({ length: 200 }, (_, i) => Buffer.concat([z(`o${i}`), z('1')]))]);
      }
    };

    const before = new Set(await walkFiles(env.dataDir));
    const replies: Buffer[] = [];
    const sockets = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = createSocket('udp4');
        s.on('message', (m) => replies.push(m));
        await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
        return s;
      }),
    );
    for (let i = 0; i < 5000; i++) {
      sockets[i % sockets.length]!.send(gen(), tftp.port, tftp.host);
      if (i % 100 === 99) await sleep(5);
    }
    await sleep(500);
    for (const s of sockets) s.close();

    const kinds = new Map<string, number>();
    for (const r of replies) {
      const p = decodePacket(r);
      kinds.set(p.op, (kinds.get(p.op) ?? 0) + 1);
      for (const s of SECRETS) expect(r.toString('latin1')).not.toContain(s);
    }
    console.log(`tftp fuzz: 5000 packets, ${replies.length} replies ${JSON.stringify([...kinds])}`);
    expect(kinds.get('error') ?? 0).toBeGreaterThan(0);
    // Nothing was written: no upload, nothing new anywhere in dataDir.
    expect((await walkFiles(env.dataDir)).filter((f) => !before.has(f))).toEqual([]);

    // A normal client is served, right away and right.
    const efi = await tftpGet({ host: tftp.host, port: tftp.port, file: 'bootx64.efi', blksize: 1468, localAddress: '127.0.0.77' });
    const efiHttp = await request(`${base}/bootx64.efi`);
    expect(efi.sha256).toBe(sha256(Buffer.from(await efiHttp.body.arrayBuffer())));
    const kernel = newestItem(NOBLE, 'boot-kernel');
    const k = await tftpGet({ host: tftp.host, port: tftp.port, file: kernel.path, blksize: 1468, localAddress: '127.0.0.78' });
    expect(k.sha256).toBe(kernel.sha256);
    // Transfers the fuzz started and abandoned are timed out, not leaked.
    await waitFor(() => daemon.tftp!.activeTransfers === 0, 20_000, 'abandoned TFTP transfers to be dropped');
  });
});

describe('configuration mistakes, through the CLI', () => {
  const good = () => ({ dataDir: join(env.dir, 'never-created'), sources: [{ name: 'stable', url: env.server.url, keyring: env.key.keyring }] });
  type Case = { name: string; text: () => string; path: string; message: RegExp };
  const yaml = (doc: unknown) => JSON.stringify(doc, null, 1);
  const withSource = (extra: Record<string, unknown>) => {
    const d = good();
    return yaml({ ...d, sources: [{ ...d.sources[0], ...extra }] });
  };
  const cases: Case[] = [
    { name: 'an unknown key in a source', text: () => withSource({ mirrorUrl: 'x' }), path: 'sources[0]', message: /unknown key "mirrorUrl"; check the spelling/ },
    { name: 'an unknown top-level key', text: () => yaml({ ...good(), donwload: {} }), path: '(top level)', message: /unknown key "donwload"; check the spelling/ },
    { name: 'a wrong type', text: () => yaml({ ...good(), download: { concurrency: 'four' } }), path: 'download.concurrency', message: /expected number/ },
    { name: 'a list where a map belongs', text: () => yaml({ ...good(), publish: ['keepSnapshots'] }), path: 'publish', message: /expected object/ },
    { name: 'a bad URL', text: () => withSource({ url: 'ftp://mirror.example/stable/' }), path: 'sources[0].url', message: /must be an http:\/\/ or https:\/\/ URL/ },
    { name: 'a bad regex', text: () => withSource({ contentIds: ['(unclosed'] }), path: 'sources[0].contentIds[0]', message: /bad regular expression/ },
    { name: 'a bad filter expression', text: () => withSource({ filters: [['arch']] }), path: 'sources[0].filters[0][0]', message: /expected key=value, key!=value, key~regex or key!~regex/ },
    { name: 'a bad filter regex', text: () => withSource({ filters: [['release~(']] }), path: 'sources[0].filters[0][0]', message: /bad regular expression/ },
    { name: 'a bad duration', text: () => yaml({ ...good(), download: { idleTimeout: '5 parsecs' } }), path: 'download.idleTimeout', message: /is not a duration; write e\.g\. "30s"/ },
    { name: 'a bad listen address', text: () => yaml({ ...good(), http: { listen: 'localhost' } }), path: 'http.listen', message: /is not host:port \(e\.g\. "0\.0\.0\.0:8080"/ },
    { name: 'a bad port in a listen list', text: () => yaml({ ...good(), tftp: { listen: ['0.0.0.0:69', '0.0.0.0:99999'] } }), path: 'tftp.listen[1]', message: /is not host:port/ },
    { name: 'a duplicate source name', text: () => yaml({ ...good(), sources: [good().sources[0], { ...good().sources[0], url: 'http://other.example/' }] }), path: 'sources[1].name', message: /duplicate source name "stable"/ },
    { name: 'no keyring with verify true', text: () => withSource({ keyring: undefined }), path: 'sources[0].keyring', message: /a keyring is required when verify is true/ },
    { name: 'a keyring file that does not exist, with verify true', text: () => withSource({ keyring: join(env.dir, 'no-such-keyring.gpg') }), path: 'sources[0].keyring', message: /no-such-keyring\.gpg/ },
    { name: 'a YAML syntax error', text: () => 'dataDir: /srv/mirror\nsources: [\n  {name: stable, url: "http://x/"\n', path: '(top level)', message: /YAML syntax: .* at line \d+, column \d+/ },
  ];

  it(`check-config exits 2, names the key path and says how to fix it, for each of ${cases.length} mistakes; nothing on disk is touched`, async () => {
    const results = await mapLimit(cases, 4, async (c) => {
      const file = join(env.dir, `bad-${cases.indexOf(c)}.yaml`);
      await writeFile(file, c.text());
      return { c, r: await cli(['check-config', '--config', file]) };
    });
    const problems: string[] = [];
    for (const { c, r } of results) {
      const line = r.stderr.split('\n').find((l) => l.startsWith(`  - ${c.path}: `));
      if (r.code !== 2) problems.push(`${c.name}: exit ${r.code} (${(r.stderr || r.stdout).slice(0, 200)})`);
      else if (!line) problems.push(`${c.name}: no line for ${c.path} in\n${r.stderr}`);
      else if (!c.message.test(line)) problems.push(`${c.name}: "${line}" does not match ${c.message}`);
      else if (!/Fix the keys above and run again; nothing was changed on disk\./.test(r.stderr)) problems.push(`${c.name}: no fix hint`);
    }
    expect(problems).toEqual([]);
    await expect(stat(join(env.dir, 'never-created'))).rejects.toThrow();
  });
});

describe('a corrupt blob on disk', () => {
  it('is found by verify, quarantined and unlinked from the tree (never served), and fetched again by the next sync', async () => {
    const kernel = newestItem(NOBLE, 'boot-kernel');
    const blob = join(env.dataDir, 'blobs/sha256', kernel.sha256.slice(0, 2), kernel.sha256);
    await chmod(blob, 0o644);
    const bytes = await readFile(blob);
    bytes[777] = bytes[777]! ^ 0x08;
    await writeFile(blob, bytes);
    await chmod(blob, 0o444);

    const v = await cli(['verify', '--config', configFile, '--json']);
    expect(v.code, v.stderr).toBe(1);
    const report = JSON.parse(v.stdout) as { checked: number; corrupt: { sha256: string; actual: string; quarantined: string }[] };
    expect(report.corrupt).toEqual([{ sha256: kernel.sha256, actual: sha256(bytes), quarantined: expect.stringContaining(join(env.dataDir, 'quarantine')) }]);
    expect(sha256(await readFile(report.corrupt[0]!.quarantined))).toBe(sha256(bytes));
    await expect(stat(blob)).rejects.toThrow();

    // Not served any more, by path or by hash: 404, never the bad bytes.
    const byPath = await request(`${base}${PREFIX}${kernel.path}`);
    const byHash = await request(`${base}/images/${kernel.sha256.slice(0, 16)}/boot-kernel`);
    for (const res of [byPath, byHash]) {
      const body = Buffer.from(await res.body.arrayBuffer());
      expect(res.statusCode).toBe(404);
      expect(sha256(body)).not.toBe(sha256(bytes));
    }

    const before = env.server.log.length;
    const s = await cli(['sync', '--config', configFile, '--json']);
    expect(s.code, s.stderr).toBe(0);
    const sync = JSON.parse(s.stdout) as { published: boolean; downloaded: { files: number } };
    expect(sync.published).toBe(true);
    expect(sync.downloaded.files).toBe(1);
    expect(env.server.log.slice(before).filter((r) => r.path === kernel.path).map((r) => r.status)).toEqual([200]);
    // The daemon sees the cron-style publish on its own (it re-reads `current` within a second).
    let served = '';
    await waitFor(async () => {
      const res = await request(`${base}${PREFIX}${kernel.path}`);
      const body = Buffer.from(await res.body.arrayBuffer());
      if (res.statusCode === 200) served = sha256(body);
      return res.statusCode === 200;
    }, 5000, 'the repaired item to be served');
    expect(served).toBe(kernel.sha256);
  });
});
