import { describe, expect, test } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
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
    'tcp://127.0.0.1:3310?',
    'tcp://127.0.0.1:3310#',
    'unix:',
    'unix:relative/clamd.sock',
    'unix://host/clamd.sock',
  ])('rejects %j with a message saying what is expected', (url) => {
    expect(() => parseClamdUrl(url)).toThrow(/Invalid clamd URL.*tcp:\/\/HOST:PORT or unix:/);
  });

  test('a refused address with credentials is not echoed with them', () => {
    expect(() => parseClamdUrl('tcp://scanner:hunter2@clamd:3310')).toThrow(/"tcp:\/\/…@clamd:3310"/);
    expect(() => parseClamdUrl('tcp://scanner:hunter2@clamd:3310')).not.toThrow(/hunter2/);
  });

  test('the scanner refuses a bad URL at construction, not at the first upload', () => {
    expect(() => new ClamdScanner({ url: 'clamd:3310' })).toThrow(/Invalid clamd URL/);
  });
});

/**
 * STOWAGE_CLAMD is checked at start with the scanner's own parser: every address the config
 * accepts, the scanner accepts (so a server never starts with a scanner that refuses its address
 * at the first upload), and every address the scanner accepts, the config accepts (an IPv6 literal
 * included).
 */
describe('the config and the scanner agree on every clamd address', () => {
  const TABLE: [url: string, valid: boolean][] = [
    ['tcp://127.0.0.1:3310', true],
    ['tcp://clamd:3310', true],
    ['tcp://clamd:3310/', true],
    ['tcp://clamav.internal:1', true],
    ['tcp://clamd:65535', true],
    ['tcp://[::1]:3310', true],
    ['tcp://[fd00::10]:3310/', true],
    ['tcp://[::ffff:127.0.0.1]:3310', true],
    ['unix:/run/clamav/clamd.ctl', true],
    ['unix:///run/clamav/clamd.ctl', true],
    ['clamd:3310', false],
    ['tcp://clamd', false],
    ['tcp://[::1]', false],
    ['tcp://::1:3310', false],
    ['tcp://[::1:3310', false],
    ['http://clamd:3310', false],
    ['tcp://clamd:port', false],
    ['tcp://clamd:0', false],
    ['tcp://clamd:99999', false],
    ['tcp://clamd:3310/scan', false],
    ['tcp://user:pw@clamd:3310', false],
    ['tcp://clamd:3310?timeout=1', false],
    ['tcp://clamd:3310#x', false],
    ['unix:', false],
    ['unix:clamd.sock', false],
    ['unix:relative/clamd.sock', false],
    ['unix://host/clamd.sock', false],
    ['unix:////double/slash', false],
  ];

  const configAccepts = (url: string): boolean => {
    try {
      return loadConfig({ STOWAGE_CLAMD: url }, '/srv/stowage').clamd === url;
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      expect(error.problems).toHaveLength(1);
      expect(error.problems[0]).toMatch(/^STOWAGE_CLAMD: .*tcp:\/\/HOST:PORT or unix:/);
      return false;
    }
  };
  const scannerAccepts = (url: string): boolean => {
    try {
      new ClamdScanner({ url });
      return true;
    } catch {
      return false;
    }
  };

  test.each(TABLE)('%s (valid: %s)', (url, valid) => {
    expect({ config: configAccepts(url), scanner: scannerAccepts(url) }).toEqual({
      config: valid,
      scanner: valid,
    });
  });
});
