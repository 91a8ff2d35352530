import { EventEmitter } from 'node:events';

export interface ProgressSnapshot {
  readonly phase: 'idle' | 'metadata' | 'download' | 'publish' | 'gc' | 'done';
  readonly filesTotal: number;
  readonly filesDone: number;
  readonly bytesTotal: number;
  readonly bytesDone: number;
  /** Bytes per second over the last few seconds. */
  readonly rate: number;
  readonly current: readonly string[];
  readonly startedAt: number;
}

/**
 * Live progress of one sync, read by the CLI's progress bar, the status page
 * and /api/v1/status. Emits 'change' at most a few times a second.
 */
export class SyncProgress extends EventEmitter {
  phase: ProgressSnapshot['phase'] = 'idle';
  filesTotal = 0;
  filesDone = 0;
  bytesTotal = 0;
  bytesDone = 0;
  readonly startedAt = Date.now();
  private readonly active = new Set<string>();
  private samples: { t: number; b: number }[] = [];
  private lastEmit = 0;

  setPhase(phase: ProgressSnapshot['phase']): void {
    this.phase = phase;
    this.emitChange(true);
  }

  plan(files: number, bytes: number): void {
    this.filesTotal = files;
    this.bytesTotal = bytes;
    this.emitChange(true);
  }

  start(name: string): void {
    this.active.add(name);
    this.emitChange(false);
  }

  finish(name: string): void {
    this.active.delete(name);
    this.filesDone++;
    this.emitChange(true);
  }

  drop(name: string): void {
    this.active.delete(name);
    this.emitChange(true);
  }

  bytes(n: number): void {
    this.bytesDone += n;
    this.sample();
    this.emitChange(false);
  }

  /** Bytes per second over the last few seconds, whoever asks and however rarely. */
  get rate(): number {
    this.sample();
    const first = this.samples[0]!;
    const last = this.samples.at(-1)!;
    const dt = (last.t - first.t) / 1000;
    return dt > 0.2 ? (last.b - first.b) / dt : 0;
  }

  private sample(): void {
    const now = Date.now();
    const last = this.samples.at(-1);
    if (last && now - last.t < 250) {
      last.b = this.bytesDone;
      return;
    }
    this.samples.push({ t: now, b: this.bytesDone });
    while (this.samples.length > 2 && now - this.samples[0]!.t > 5000) this.samples.shift();
  }

  snapshot(): ProgressSnapshot {
    return {
      phase: this.phase,
      filesTotal: this.filesTotal,
      filesDone: this.filesDone,
      bytesTotal: this.bytesTotal,
      bytesDone: this.bytesDone,
      rate: this.rate,
      current: [...this.active],
      startedAt: this.startedAt,
    };
  }

  private emitChange(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastEmit < 200) return;
    this.lastEmit = now;
    this.emit('change');
  }
}
