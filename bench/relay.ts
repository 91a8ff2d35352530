/**
 * A boot LAN in user space: a UDP relay between TFTP clients and a server
 * that delays every datagram and drops a share of them, in both directions.
 * This kernel has no sch_netem, so latency and loss are made here.
 *
 *   npx tsx bench/relay.ts --target 127.0.0.1:69 [--delay-ms 0.25] [--drop 0.01]
 *
 * prints `port N` once it listens. TFTP answers from a new port per transfer
 * (its TID), so each client port gets its own upstream socket, and each
 * server port answering it gets its own client-facing socket: the client sees
 * one port per transfer as it would without the relay.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

export interface RelayOptions {
  /** The server's request port. */
  readonly target: { readonly host: string; readonly port: number };
  /** One-way delay added to every datagram, in ms (fractions allowed). */
  readonly delayMs: number;
  /** Share of datagrams dropped in each direction, 0 to 1. */
  readonly dropShare: number;
  /** Default 127.0.0.1. */
  readonly listenHost?: string;
  /** Client ports followed at once; requests beyond it are dropped. Default 4096. */
  readonly maxMappings?: number;
  /** A mapping without traffic for this long is closed. Default 30 s. */
  readonly idleMs?: number;
  /** Source of the drop decisions; default Math.random. */
  readonly random?: () => number;
}

export interface RelayStats {
  forwarded: number;
  dropped: number;
}

/** One client transfer: its upstream socket and a client-facing socket per server port that answered. */
interface Mapping {
  readonly client: RemoteInfo;
  readonly upstream: Socket;
  readonly downstream: Map<number, Socket>;
  seen: number;
}

interface Pending {
  readonly due: number;
  readonly socket: Socket;
  readonly msg: Buffer;
  readonly port: number;
  readonly address: string;
}

/** Below this a timer (1 ms resolution) would overshoot: the queue is polled once per event-loop turn instead. */
const TIMER_FLOOR_MS = 1.5;

export class UdpRelay {
  readonly stats: RelayStats = { forwarded: 0, dropped: 0 };
  private readonly main = createSocket('udp4');
  private readonly mappings = new Map<string, Mapping>();
  /** FIFO: the delay is the same for every datagram, so due times only grow. */
  private queue: Pending[] = [];
  private head = 0;
  private pumping = false;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly random: () => number;
  private readonly host: string;

  constructor(private readonly o: RelayOptions) {
    if (!(o.dropShare >= 0 && o.dropShare <= 1)) throw new Error(`drop share ${o.dropShare} is not between 0 and 1`);
    if (!(o.delayMs >= 0)) throw new Error(`delay ${o.delayMs} ms is negative`);
    this.random = o.random ?? Math.random;
    this.host = o.listenHost ?? '127.0.0.1';
  }

  /** Binds the request port; resolves with it. */
  async start(): Promise<number> {
    this.main.on('message', (msg, rinfo) => this.fromClient(msg, rinfo, this.o.target.port));
    await new Promise<void>((resolve, reject) => {
      this.main.once('error', reject);
      this.main.bind(0, this.host, () => {
        this.main.off('error', reject);
        resolve();
      });
    });
    const idleMs = this.o.idleMs ?? 30_000;
    this.sweeper = setInterval(() => this.sweep(idleMs), Math.max(100, idleMs / 4));
    this.sweeper.unref();
    return this.main.address().port;
  }

  get activeMappings(): number {
    return this.mappings.size;
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
    this.queue = [];
    this.head = 0;
    for (const key of [...this.mappings.keys()]) this.close(key);
    await new Promise<void>((resolve) => this.main.close(() => resolve()));
  }

  /** A datagram from a client, to the server port it is meant for (the request port or a transfer's). */
  private fromClient(msg: Buffer, client: RemoteInfo, serverPort: number): void {
    const key = `${client.address}:${client.port}`;
    let m = this.mappings.get(key);
    if (!m) {
      if (this.mappings.size >= (this.o.maxMappings ?? 4096)) return;
      m = this.open(key, client);
    }
    m.seen = performance.now();
    this.enqueue(m.upstream, msg, serverPort, this.o.target.host);
  }

  private open(key: string, client: RemoteInfo): Mapping {
    const upstream = createSocket('udp4');
    const m: Mapping = { client, upstream, downstream: new Map(), seen: performance.now() };
    upstream.on('message', (msg, server) => {
      m.seen = performance.now();
      this.enqueue(this.downstreamFor(m, server.port), msg, client.port, client.address);
    });
    // An ICMP error for one datagram must not end the relay; the datagram is lost, as on a wire.
    upstream.on('error', () => undefined);
    upstream.bind(0, this.host);
    this.mappings.set(key, m);
    return m;
  }

  private downstreamFor(m: Mapping, serverPort: number): Socket {
    let s = m.downstream.get(serverPort);
    if (!s) {
      const socket = createSocket('udp4');
      socket.on('message', (msg, rinfo) => {
        // Only the mapped client talks to this port, as only it may talk to the server's TID.
        if (rinfo.port === m.client.port && rinfo.address === m.client.address) this.fromClient(msg, rinfo, serverPort);
      });
      socket.on('error', () => undefined);
      socket.bind(0, this.host);
      m.downstream.set(serverPort, socket);
      s = socket;
    }
    return s;
  }

  private enqueue(socket: Socket, msg: Buffer, port: number, address: string): void {
    if (this.o.dropShare > 0 && this.random() < this.o.dropShare) {
      this.stats.dropped++;
      return;
    }
    this.queue.push({ due: performance.now() + this.o.delayMs, socket, msg, port, address });
    if (!this.pumping) {
      this.pumping = true;
      setImmediate(() => this.pump());
    }
  }

  /** Sends every datagram whose delay is over, then waits for the next one. */
  private pump(): void {
    const now = performance.now();
    while (this.head < this.queue.length && this.queue[this.head]!.due <= now) {
      const p = this.queue[this.head++]!;
      this.stats.forwarded++;
      try {
        p.socket.send(p.msg, p.port, p.address);
      } catch {
        // Its mapping was closed meanwhile: lost, as on a wire.
      }
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      this.pumping = false;
      return;
    }
    if (this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    const wait = this.queue[this.head]!.due - now;
    if (wait >= TIMER_FLOOR_MS) setTimeout(() => this.pump(), Math.floor(wait));
    else setImmediate(() => this.pump());
  }

  private sweep(idleMs: number): void {
    const now = performance.now();
    for (const [key, m] of this.mappings) if (now - m.seen > idleMs) this.close(key);
  }

  private close(key: string): void {
    const m = this.mappings.get(key);
    if (!m) return;
    this.mappings.delete(key);
    for (const s of [m.upstream, ...m.downstream.values()]) {
      try {
        s.close();
      } catch {
        // already closed
      }
    }
  }
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [host = '127.0.0.1', port = '69'] = (arg('--target') ?? '127.0.0.1:69').split(':');
  const relay = new UdpRelay({
    target: { host, port: Number(port) },
    delayMs: Number(arg('--delay-ms') ?? 0.25),
    dropShare: Number(arg('--drop') ?? 0.01),
  });
  process.stdout.write(`port ${await relay.start()}\n`);
  process.on('SIGTERM', () => void relay.stop().then(() => process.exit(0)));
}
