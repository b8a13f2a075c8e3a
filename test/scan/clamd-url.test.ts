import { describe, expect, test } from 'vitest';
import { ClamdScanner, parseClamdUrl } from '../../src/scan/clamd.ts';

describe('parseClamdUrl', () => {
  test('accepts tcp://HOST:PORT and unix:/path', () => {
    expect(parseClamdUrl('tcp://127.0.0.1:3310')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 3310 });
    expect(parseClamdUrl('tcp://clamav.internal:3310/')).toEqual({
      kind: 'tcp',
      host: 'clamav.internal',
      port: 3310,
    });
    expect(parseClamdUrl('tcp://[::1]:3310')).toEqual({ kind: 'tcp', host: '::1', port: 3310 });
    expect(parseClamdUrl('unix:/run/clamav/clamd.ctl')).toEqual({
      kind: 'unix',
      path: '/run/clamav/clamd.ctl',
    });
    expect(parseClamdUrl('unix:///run/clamav/clamd.ctl')).toEqual({
      kind: 'unix',
      path: '/run/clamav/clamd.ctl',
    });
  });

  test.each([
    '',
    'clamd',
    '127.0.0.1:3310',
    'http://127.0.0.1:3310',
    'tcp://127.0.0.1',
    'tcp://:3310',
    'tcp://127.0.0.1:0',
    'tcp://127.0.0.1:70000',
    'tcp://127.0.0.1:3310/scan',
    'tcp://user:pw@127.0.0.1:3310',
    'tcp://127.0.0.1:3310?x=1',
    'unix:',
    'unix:relative/clamd.sock',
    'unix://host/clamd.sock',
  ])('rejects %j with a message saying what is expected', (url) => {
    expect(() => parseClamdUrl(url)).toThrow(/Invalid clamd URL.*tcp:\/\/HOST:PORT or unix:/);
  });

  test('the scanner refuses a bad URL at construction, not at the first upload', () => {
    expect(() => new ClamdScanner({ url: 'clamd:3310' })).toThrow(/Invalid clamd URL/);
  });
});
