import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Nginx {
  readonly url: string;
  stop(): Promise<void>;
}

/** A free loopback TCP port. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as { port: number }).port;
  await new Promise((ok) => s.close(ok));
  return port;
}

export interface NginxOptions {
  /** URL path `root` is served under (default "/"). */
  readonly location?: string;
  /** Write an access log, as a production server would (default off). */
  readonly accessLog?: boolean;
  /**
   * A server block (given the port to listen on) used instead of the plain one
   * that serves `root`: e.g. what `maas-mirror nginx-config` prints.
   */
  readonly site?: (port: number) => Promise<string>;
  /** worker_processes (default NGINX_WORKERS). */
  readonly workers?: number;
}

/** worker_processes of every nginx the benchmarks start unless told, so they compare alike. */
export const NGINX_WORKERS = 1;

/** Debian's nginx, installed on first use, serving `root` on a loopback port with sendfile; NGINX_WORKERS workers unless told. */
export async function startNginx(root: string, workDir: string, options: NginxOptions = {}): Promise<Nginx> {
  const location = options.location ?? '/';
  if (!existsSync('/usr/sbin/nginx')) {
    execFileSync('apt-get', ['install', '-y', '-qq', 'nginx'], { stdio: 'inherit' });
  }
  const port = await freePort();
  await mkdir(join(workDir, 'nginx'), { recursive: true });
  const conf = join(workDir, 'nginx', 'nginx.conf');
  const site = options.site
    ? await options.site(port)
    : `server {
    listen 127.0.0.1:${port};
    location ${location} { alias ${root}/; }
  }`;
  await writeFile(
    conf,
    `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes ${options.workers ?? NGINX_WORKERS};
pid ${join(workDir, 'nginx', 'nginx.pid')};
error_log ${join(workDir, 'nginx', 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log ${options.accessLog ? join(workDir, 'nginx', 'access.log') : 'off'};
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  types { application/json json; }
  default_type application/octet-stream;
  client_body_temp_path ${join(workDir, 'nginx')};
  proxy_temp_path ${join(workDir, 'nginx')};
  fastcgi_temp_path ${join(workDir, 'nginx')};
  uwsgi_temp_path ${join(workDir, 'nginx')};
  scgi_temp_path ${join(workDir, 'nginx')};
  ${site}
}
`,
  );
  const proc: ChildProcess = spawn('/usr/sbin/nginx', ['-c', conf, '-p', join(workDir, 'nginx')], { stdio: 'inherit' });
  const url = `http://127.0.0.1:${port}${location}`;
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(url + 'streams/v1/index.json', { method: 'HEAD' });
      if (r.status < 500) break;
    } catch {
      await sleep(50);
    }
  }
  return {
    url,
    async stop() {
      proc.kill('SIGQUIT');
      await new Promise((ok) => (proc.exitCode !== null ? ok(null) : proc.once('exit', ok)));
    },
  };
}
