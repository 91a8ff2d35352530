import { describe, expect, it } from 'vitest';
import { WorkerLogSink } from './worker-log.js';

describe('WorkerLogSink: an HTTP worker\'s lines on their way to the primary', () => {
  it('sends whole lines together, and flush() resolves once the channel took them', async () => {
    const sent: string[] = [];
    const sink = new WorkerLogSink((text, done) => {
      sent.push(text);
      setImmediate(done);
    });
    sink.write('{"a":1}\n');
    sink.write('{"b":2}\n');
    sink.write('{"c":3}\n');
    expect(sent).toEqual([]);
    await sink.flush();
    expect(sent).toEqual(['{"a":1}\n{"b":2}\n{"c":3}\n']);
  });

  it('drops and counts lines past its in-flight bound, then says how many', async () => {
    const sent: string[] = [];
    const waiting: (() => void)[] = [];
    const sink = new WorkerLogSink((text, done) => {
      sent.push(text);
      waiting.push(done);
    }, 100);
    sink.write(`${'x'.repeat(80)}\n`);
    void sink.flush();
    // The channel has not taken the first batch: these two lines do not fit.
    sink.write('{"late":1}\n{"late":2}\n');
    void sink.flush();
    expect(sent).toHaveLength(1);
    for (const done of waiting.splice(0)) done();
    sink.write('{"after":1}\n');
    await Promise.all([sink.flush(), Promise.resolve().then(() => waiting.splice(0).forEach((d) => d()))]);
    const last = sent.at(-1)!.split('\n');
    expect(JSON.parse(last[0]!)).toMatchObject({ level: 'warn', msg: '2 log lines dropped: the main process was not taking them fast enough' });
    expect(last[1]).toBe('{"after":1}');
  });
});
