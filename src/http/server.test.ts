import { describe, expect, it } from 'vitest';
import { isRouted } from './server.js';

describe('isRouted', () => {
  const routed = ['/api', '/', '/metrics', '/livez'];
  it.each([
    ['/api', true],
    ['/api/v1/sync', true],
    ['/api?x=1', true],
    ['/apix', false],
    ['/', true],
    ['/?refresh=1', true],
    ['/metrics', true],
    ['/metrics?name[]=x', true],
    ['/livez', true],
    ['/bootx64.efi', false],
    ['/maas/images/ephemeral-v3/stable/streams/v1/index.sjson', false],
  ])('%s → %s', (url, expected) => expect(isRouted(url, routed)).toBe(expected));
});
