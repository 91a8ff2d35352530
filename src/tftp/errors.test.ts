import { describe, expect, it } from 'vitest';
import { isMirrorError } from '../errors.js';
import { TftpBindError } from './errors.js';

const sysErr = (code: string) => Object.assign(new Error(code), { code });

describe('TftpBindError', () => {
  it('names the fixes for a privileged port', () => {
    const e = new TftpBindError('0.0.0.0', 69, { cause: sysErr('EACCES') });
    expect(e.code).toBe('MM_TFTP_BIND');
    expect(isMirrorError(e)).toBe(true);
    expect(e.message).toContain('0.0.0.0:69');
    expect(e.message).toContain(
      'run with CAP_NET_BIND_SERVICE (setcap or systemd AmbientCapabilities), or set tftp.listen to a high port',
    );
  });

  it('points at the other server when the port is taken, and brackets IPv6', () => {
    const e = new TftpBindError('::1', 69, { cause: sysErr('EADDRINUSE') });
    expect(e.message).toContain('[::1]:69');
    expect(e.message).toMatch(/already in use.*tftp\.listen/);
  });
});
