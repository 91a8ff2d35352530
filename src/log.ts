import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout, level from LOG_LEVEL. Secrets are redacted by key
 * name wherever they appear, so a token or key can never reach a log line.
 */
export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { app: 'maas-mirror' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'privateKey', '*.privateKey', 'passphrase'],
        censor: '[redacted]',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/**
 * A child logger whose bindings replace the parent's of the same name. pino's
 * own child() appends them, so a line would carry the key twice (e.g.
 * "component":"sync" and "component":"bootloaders"), which JSON readers
 * resolve differently.
 */
export function childLogger(parent: Logger, bindings: Record<string, unknown>): Logger {
  const inherited = parent.bindings();
  if (!Object.keys(bindings).some((k) => k in inherited)) return parent.child(bindings);
  const child = parent.child({});
  // Rebuilt from scratch: setBindings() appends to what the child already holds.
  (child as unknown as Record<symbol, string>)[pino.symbols.chindingsSym] = '';
  child.setBindings({ ...inherited, ...bindings });
  return child;
}

/** A logger that drops everything: for tests and library use without output. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
