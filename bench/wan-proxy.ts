import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A WAN between two loopback endpoints, modelled in user space as toxiproxy
 * does (this kernel has no sch_netem): a TCP proxy whose every chunk reaches
 * the other side a one-way delay after the link has carried it.
 *
 * - Latency: each direction delays every chunk by `delayMs`, so a request
 *   costs a round trip; a new connection costs one more (its handshake).
 * - Bandwidth: the server-to-client direction is paced by a link that gives
 *   each connection at most `perConnection` bytes/s and all connections
 *   together at most `total` bytes/s, shared out in turns (what one TCP flow
 *   gets on a long path versus what the site's link carries).
 * - Window: a connection holds at most `windowBytes` read from its source
 *   and not yet delivered; beyond that the source is paused, as a TCP window
 *   would stop the sender, so the proxy never buffers a whole file.
 */
export interface WanOptions {
  /** Where connections go (host:port of the upstream). */
  readonly target: { host: string; port: number };
  /** One-way delay, ms (default 20). */
  readonly delayMs?: number;
  /** Bytes/s one connection gets downstream (default 5 MB/s). */
  readonly perConnection?: number;
  /** Bytes/s all connections get together downstream (default 25 MB/s). */
  readonly total?: number;
  /** Bytes a direction may hold in flight before its source is paused (default 1 MiB). */
  readonly windowBytes?: number;
}

/** How often the link hands out its bytes; the budget follows the real time elapsed, so a late tick loses nothing. */
const TICK_MS = 2;
/** A tick that comes very late (a loaded machine) does not let out a burst larger than this much time's worth. */
const MAX_CATCH_UP_MS = 20;

interface Flow {
  /** Bytes read from the source and not yet on the link. */
  readonly queue: Buffer[];
  queued: number;
  /** Bytes read and not yet delivered (queued, on the link or in the delay line). */
  held: number;
  /** Per-connection allowance left (bytes), refilled each tick. */
  allowance: number;
  ended: boolean;
  readonly src: Socket;
  readonly dst: Socket;
}

export class WanProxy {
  readonly delayMs: number;
  readonly perConnection: number;
  readonly total: number;
  private readonly windowBytes: number;
  private server: Server | undefined;
  private readonly flows = new Set<Flow>();
  private readonly sockets = new Set<Socket>();
  private timer: NodeJS.Timeout | undefined;
  private last = 0;
  /** Turn order: the flow served first rotates each tick, so no connection starves under the total cap. */
  private turn = 0;
  /** Bytes carried downstream since start (for tests and reports). */
  carried = 0;
  connections = 0;

  constructor(private readonly opts: WanOptions) {
    this.delayMs = opts.delayMs ?? 20;
    this.perConnection = opts.perConnection ?? 5e6;
    this.total = opts.total ?? 25e6;
    this.windowBytes = opts.windowBytes ?? 1 << 20;
  }

  async start(): Promise<number> {
    this.server = createServer({ pauseOnConnect: true }, (client) => this.accept(client));
    await new Promise<void>((ok) => this.server!.listen(0, '127.0.0.1', ok));
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    return (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise<void>((ok) => this.server!.close(() => ok()));
    this.server = undefined;
  }

  private accept(client: Socket): void {
    this.connections++;
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    client.on('error', () => undefined);
    // The handshake: SYN out, SYN-ACK back. What the client sends meanwhile waits in the kernel (paused).
    setTimeout(() => {
      if (client.destroyed) return;
      const upstream = connect(this.opts.target.port, this.opts.target.host);
      this.sockets.add(upstream);
      upstream.once('close', () => this.sockets.delete(upstream));
      upstream.on('error', () => undefined);
      // A reset goes through at once; a clean end follows the bytes still on their way (see maybeEnd).
      client.once('close', () => upstream.destroy());
      upstream.once('close', (hadError) => {
        if (hadError) client.destroy();
      });
      upstream.once('connect', () => {
        // Requests are small: they take the delay, not the rate.
        this.delayOnly(client, upstream);
        this.paced(upstream, client);
        client.resume();
      });
    }, 2 * this.delayMs);
  }

  /** client → server: every chunk a one-way delay later, in order. */
  private delayOnly(src: Socket, dst: Socket): void {
    let held = 0;
    src.on('data', (chunk: Buffer) => {
      held += chunk.length;
      if (held > this.windowBytes) src.pause();
      setTimeout(() => {
        held -= chunk.length;
        if (!dst.destroyed) dst.write(chunk);
        if (held <= this.windowBytes / 2 && src.isPaused()) src.resume();
      }, this.delayMs);
    });
    src.once('end', () => setTimeout(() => dst.end(), this.delayMs));
  }

  /** server → client: paced by the link, then delayed. */
  private paced(src: Socket, dst: Socket): void {
    const flow: Flow = { queue: [], queued: 0, held: 0, allowance: 0, ended: false, src, dst };
    this.flows.add(flow);
    src.on('data', (chunk: Buffer) => {
      flow.queue.push(chunk);
      flow.queued += chunk.length;
      flow.held += chunk.length;
      if (flow.held > this.windowBytes) src.pause();
    });
    src.once('end', () => {
      flow.ended = true;
      this.maybeEnd(flow);
    });
    src.once('close', () => {
      if (!flow.ended) this.flows.delete(flow);
    });
  }

  private maybeEnd(flow: Flow): void {
    if (!flow.ended || flow.queued > 0) return;
    this.flows.delete(flow);
    // After the last bytes: they left the link no later than now and take the same delay.
    setTimeout(() => flow.dst.end(), this.delayMs);
  }

  private tick(): void {
    const now = performance.now();
    const dt = Math.min(now - this.last, MAX_CATCH_UP_MS) / 1000;
    this.last = now;
    let link = this.total * dt;
    const flows = [...this.flows];
    if (flows.length === 0) return;
    for (const f of flows) f.allowance = Math.min(f.allowance + this.perConnection * dt, this.perConnection * dt * 2);
    this.turn = (this.turn + 1) % flows.length;
    // Turns: each flow with data takes what its allowance and the link's share allow; repeat while the link has bytes left.
    for (let progress = true; link >= 1 && progress; ) {
      progress = false;
      // A receiver that stops reading closes its window: the link carries nothing more for it.
      const busy = flows.filter((f) => f.queued > 0 && f.allowance >= 1 && f.dst.writableLength < this.windowBytes);
      if (busy.length === 0) break;
      const share = link / busy.length;
      for (let k = 0; k < busy.length; k++) {
        const f = busy[(k + this.turn) % busy.length]!;
        const n = Math.floor(Math.min(share, f.allowance, f.queued));
        if (n <= 0) continue;
        this.send(f, n);
        link -= n;
        progress = true;
      }
    }
  }

  /** Puts n bytes of a flow on the link: they arrive a one-way delay from now. */
  private send(f: Flow, n: number): void {
    const parts: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const head = f.queue[0]!;
      if (head.length <= left) {
        parts.push(head);
        f.queue.shift();
        left -= head.length;
      } else {
        parts.push(head.subarray(0, left));
        f.queue[0] = head.subarray(left);
        left = 0;
      }
    }
    f.queued -= n;
    f.allowance -= n;
    this.carried += n;
    const out = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    setTimeout(() => {
      f.held -= n;
      if (!f.dst.destroyed) f.dst.write(out);
      if (f.held <= this.windowBytes / 2 && f.src.isPaused()) f.src.resume();
    }, this.delayMs);
    this.maybeEnd(f);
  }
}
