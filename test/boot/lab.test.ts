import { describe, expect, it } from 'vitest';
import { unansweredConnection } from './lab.js';

// What `ss -tinoH` printed for a machine whose firmware stopped taking packets mid-kernel (a boot storm).
const STALLED = `FIN-WAIT-1 0      468901    10.240.0.1:8080 10.240.0.193:49153 timer:(on,13sec,10)
\t bbr rto:27648 backoff:7 rtt:15.088/3.585 ato:40 mss:1460 pmtu:1500 rcvmss:536 advmss:1460 cwnd:1 ssthresh:68 bytes_sent:4847560 bytes_retrans:7400 bytes_acked:4837960 bytes_received:519 segs_out:3374 segs_in:1885 data_segs_out:3373 data_segs_in:1 send 774125bps lastsnd:13856 lastrcv:131552 lastack:128856 pacing_rate 28319376bps delivered:3362 unacked:2 retrans:1/10 lost:2 notsent:466701 minrtt:1.092 snd_wnd:2200
`;

describe('unansweredConnection', () => {
  it('finds a connection retransmitting with nothing acknowledged for longer than the limit', () => {
    expect(unansweredConnection(STALLED, 30_000)).toBe('FIN-WAIT-1 retransmitting (backoff 7), 4837960 bytes acknowledged, the last 129 s ago');
  });

  it('does not count a connection acknowledged within the limit, or one with no timer running', () => {
    expect(unansweredConnection(STALLED, 200_000)).toBeUndefined();
    expect(unansweredConnection(STALLED.replace('timer:(on,13sec,10)', ''), 30_000)).toBeUndefined();
    expect(unansweredConnection('', 30_000)).toBeUndefined();
  });

  it('counts a zero window the client never answers a probe for', () => {
    const probing = STALLED.replace('timer:(on,13sec,10)', 'timer:(persist,12sec,0)').replace('FIN-WAIT-1', 'ESTAB');
    expect(unansweredConnection(probing, 30_000)).toBe('ESTAB probing a zero window (backoff 7), 4837960 bytes acknowledged, the last 129 s ago');
  });
});
