import cliProgress from 'cli-progress';
import type { SyncProgress } from '../mirror/progress.js';
import { formatBytes } from '../format.js';

/** A one-line bar on a terminal: bytes, rate, ETA and the file in flight. */
export function attachProgressBar(progress: SyncProgress, stream: NodeJS.WriteStream): { stop(): void } {
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: '{bar} {percentage}% | {done}/{total} | {rate}/s | ETA {eta_formatted} | {file}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  const onChange = () => {
    const s = progress.snapshot();
    if (s.phase !== 'download' || s.bytesTotal === 0) return;
    const payload = {
      done: formatBytes(s.bytesDone),
      total: formatBytes(s.bytesTotal),
      rate: formatBytes(Math.round(s.rate)),
      file: s.current[0] ?? '',
    };
    if (!started) {
      bar.start(s.bytesTotal, s.bytesDone, payload);
      started = true;
    } else bar.update(s.bytesDone, payload);
  };
  progress.on('change', onChange);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      progress.off('change', onChange);
      if (started) bar.stop();
    },
  };
}
