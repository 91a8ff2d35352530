import { Writable } from 'node:stream';
import { Agent, EnvHttpProxyAgent, errors as undiciErrors, interceptors, type Dispatcher } from 'undici';
import { AbortedError, UpstreamHttpError, UpstreamNetworkError } from '../errors.js';
import { parseRetryAfter } from './retry.js';

export interface ClientOptions {
  connectTimeout: number;
  idleTimeout: number;
  connections: number;
  /** download.proxy; when unset, HTTPS_PROXY/HTTP_PROXY (and NO_PROXY) of the environment apply. */
  proxy?: string;
}

/** The first of these variables that is set and not empty (curl's reading: an empty one counts as unset). */
function fromEnv(env: NodeJS.ProcessEnv, ...names: string[]): string | undefined {
  for (const n of names) if (env[n]) return env[n];
  return undefined;
}

export interface ProxySettings {
  readonly httpProxy?: string;
  readonly httpsProxy?: string;
  readonly noProxy?: string;
}

/** The proxies requests go through: download.proxy, else HTTPS_PROXY/HTTP_PROXY; NO_PROXY either way. undefined: none. */
export function proxySettings(proxy: string | undefined, env: NodeJS.ProcessEnv = process.env): ProxySettings | undefined {
  const httpProxy = proxy ?? fromEnv(env, 'http_proxy', 'HTTP_PROXY');
  const httpsProxy = proxy ?? fromEnv(env, 'https_proxy', 'HTTPS_PROXY') ?? httpProxy;
  if (!httpProxy && !httpsProxy) return undefined;
  // An empty string, not undefined: undici would otherwise read the environment again.
  return { httpProxy: httpProxy ?? '', httpsProxy: httpsProxy ?? '', noProxy: fromEnv(env, 'no_proxy', 'NO_PROXY') ?? '' };
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Dispatcher.ResponseData['body'];
}

/** What a status other than 2xx/304 means (redirects are followed before this). */
function refusal(url: string, status: number, headers: Record<string, string | string[] | undefined>): UpstreamHttpError | undefined {
  if (status < 300 || status === 304) return undefined;
  return new UpstreamHttpError(url, status, parseRetryAfter(headers['retry-after']));
}

/** A writable that fails at once: how a stream() sink refuses a response. */
export function failing(err: Error): Writable {
  return new Writable({
    construct: (done) => done(err),
    write: (_c, _e, done) => done(err),
  });
}

const USER_AGENT = 'maas-mirror/0.1 (+simplestreams mirror)';

/**
 * One undici Agent per sync: keep-alive connections to the upstream, with a
 * connect timeout and an idle timeout that also catches a body that stalls.
 */
export class UpstreamClient {
  private readonly agent: Dispatcher;
  private readonly dispatcher: Dispatcher;

  constructor(opts: ClientOptions) {
    const agentOptions = {
      connect: { timeout: opts.connectTimeout },
      headersTimeout: opts.idleTimeout,
      bodyTimeout: opts.idleTimeout,
      connections: opts.connections,
      keepAliveTimeout: 10_000,
    };
    // NO_PROXY is honoured either way; a configured proxy overrides the environment's.
    const proxies = proxySettings(opts.proxy);
    this.agent = proxies ? new EnvHttpProxyAgent({ ...agentOptions, ...proxies }) : new Agent(agentOptions);
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: 5 }));
  }

  /** GET; statuses other than 2xx/304 become UpstreamHttpError (body drained). */
  async get(url: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<UpstreamResponse> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.dispatcher.request({
        origin: new URL(url).origin,
        path: new URL(url).pathname + new URL(url).search,
        method: 'GET',
        headers: { 'user-agent': USER_AGENT, ...headers },
        signal,
      });
    } catch (err) {
      throw translateError(err, url);
    }
    const refused = refusal(url, res.statusCode, res.headers);
    if (refused) {
      await res.body.dump().catch(() => undefined);
      throw refused;
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  /**
   * GET with the body written into what `sink` returns for the response's
   * status and headers (a Writable); resolves once that writable finished.
   * A status the caller cannot use should make `sink` return a writable
   * that fails: the request is then aborted.
   */
  async stream(
    url: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    sink: (status: number, headers: Record<string, string | string[] | undefined>) => Writable,
  ): Promise<void> {
    const u = new URL(url);
    try {
      await this.dispatcher.stream(
        { origin: u.origin, path: u.pathname + u.search, method: 'GET', headers: { 'user-agent': USER_AGENT, ...headers }, signal },
        ({ statusCode, headers: h }) => {
          const refused = refusal(url, statusCode, h);
          return refused ? failing(refused) : sink(statusCode, h);
        },
      );
    } catch (err) {
      throw translateError(err, url);
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

const LOCAL_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE', 'EIO', 'ENOENT', 'EISDIR', 'ENOTDIR']);

export function translateError(err: unknown, url: string): unknown {
  if (err instanceof AbortedError || err instanceof UpstreamHttpError) return err;
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === 'AbortError' || e?.code === 'UND_ERR_ABORTED') return new AbortedError();
  if (err instanceof undiciErrors.BodyTimeoutError || err instanceof undiciErrors.HeadersTimeoutError) {
    return new UpstreamNetworkError(url, 'the upstream stopped sending (idle timeout)', { cause: err });
  }
  if (err instanceof undiciErrors.ConnectTimeoutError) {
    return new UpstreamNetworkError(url, 'connect timed out', { cause: err });
  }
  // Local trouble (a full disk, a read-only folder) is not the network's fault: leave it as it is.
  if (e?.code && LOCAL_ERRNOS.has(e.code)) return err;
  if (err instanceof undiciErrors.UndiciError || (e?.code && /^(E[A-Z]+|UND_ERR_\w+)$/.test(e.code))) {
    return new UpstreamNetworkError(url, `${e.code ?? 'network error'}: ${e.message}`, { cause: err });
  }
  return err;
}
