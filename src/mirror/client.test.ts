import { describe, expect, it } from 'vitest';
import { proxySettings } from './client.js';

describe('proxy settings', () => {
  it('download.proxy wins over the environment; NO_PROXY still applies', () => {
    expect(proxySettings('http://p:3128', { HTTP_PROXY: 'http://other:1', NO_PROXY: 'localhost' })).toEqual({
      httpProxy: 'http://p:3128',
      httpsProxy: 'http://p:3128',
      noProxy: 'localhost',
    });
  });

  it('reads the environment as curl does: lower case first, an empty variable is unset', () => {
    expect(proxySettings(undefined, {})).toBeUndefined();
    expect(proxySettings(undefined, { http_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '' })).toBeUndefined();
    expect(proxySettings(undefined, { http_proxy: '', HTTP_PROXY: 'http://up:1' })).toEqual({ httpProxy: 'http://up:1', httpsProxy: 'http://up:1', noProxy: '' });
    expect(proxySettings(undefined, { https_proxy: 'http://s:2', HTTPS_PROXY: 'http://S:3' })).toEqual({ httpProxy: '', httpsProxy: 'http://s:2', noProxy: '' });
  });
});
