/**
 * An HTTP worker's log destination: its lines go to the primary, which
 * writes them to the one stdout. Two processes writing one pipe or socket
 * could interleave a long line; here only whole lines cross, batched (an
 * access log line per request would otherwise be a message per request).
 */
export class WorkerLogSink {
  private pending = '';
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private dropped = 0;

  constructor(
    private readonly send: (text: string, done: () => void) => void,
    /** Bytes handed to the channel and not yet taken by it: past this, lines are dropped and counted. */
    private readonly maxInFlight = MAX_LOG_BYTES_IN_FLIGHT,
  ) {}

  write(text: string): boolean {
    this.pending += text;
    if (this.pending.length >= BATCH_BYTES) this.flushNow();
    else this.timer ??= setTimeout(() => this.flushNow(), BATCH_MS);
    return true;
  }

  /** Sends what is pending; resolves once the channel took it. */
  flush(): Promise<void> {
    return new Promise((resolve) => this.flushNow(resolve));
  }

  private flushNow(done?: () => void): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    let text = this.pending;
    this.pending = '';
    if (this.inFlight + text.length > this.maxInFlight) {
      // The primary is not keeping up: a bounded loss beats unbounded memory.
      this.dropped += countLines(text);
      text = '';
    } else if (this.dropped > 0) {
      text = `${JSON.stringify({ level: 'warn', time: new Date().toISOString(), msg: `${this.dropped} log lines dropped: the main process was not taking them fast enough` })}\n${text}`;
      this.dropped = 0;
    }
    if (text === '') {
      done?.();
      return;
    }
    const n = text.length;
    this.inFlight += n;
    this.send(text, () => {
      this.inFlight -= n;
      done?.();
    });
  }
}

/** Lines wait at most this long (ms) for others to go with them. */
const BATCH_MS = 5;
const BATCH_BYTES = 64 * 1024;
export const MAX_LOG_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}
