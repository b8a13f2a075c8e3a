import { describe, expect, test } from 'vitest';
import { negotiateFormat } from '../../src/images/negotiate-format.ts';

describe('negotiateFormat', () => {
  test.each([
    [undefined, 'webp'],
    ['', 'webp'],
    ['*/*', 'webp'],
    ['image/*', 'webp'],
    ['image/webp', 'webp'],
    ['image/avif', 'avif'],
    ['image/jpeg', 'jpeg'],
    ['IMAGE/JPEG', 'jpeg'],
  ] as const)('Accept %j → %s', (accept, format) => {
    expect(negotiateFormat(accept)).toBe(format);
  });

  test('follows the q-values the client gives', () => {
    expect(negotiateFormat('image/avif,image/webp;q=0.9')).toBe('avif');
    expect(negotiateFormat('image/webp;q=0.5, image/jpeg;q=0.8')).toBe('jpeg');
    expect(negotiateFormat('image/jpeg;q=0.7, image/avif;q=0.71, image/webp;q=0.2')).toBe('avif');
    expect(negotiateFormat('image/jpeg, image/webp;q=0.999')).toBe('jpeg');
    expect(negotiateFormat('image/avif ; Q=1 , image/webp;q=0.9')).toBe('avif');
  });

  test('gives browsers the format they list first among equals', () => {
    const chrome = 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8';
    const firefox = 'image/avif,image/webp,*/*';
    const safari =
      'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5';
    expect([chrome, firefox, safari].map(negotiateFormat)).toEqual(['avif', 'avif', 'webp']);
    expect(negotiateFormat('image/webp,image/avif')).toBe('webp');
    expect(negotiateFormat('image/jpeg,image/webp')).toBe('jpeg');
  });

  test('never picks a format the client excluded with q=0', () => {
    expect(negotiateFormat('image/webp;q=0, */*')).toBe('jpeg');
    expect(negotiateFormat('image/webp;q=0, image/jpeg;q=0, image/*')).toBe('avif');
    expect(negotiateFormat('image/webp;q=0.000, image/avif')).toBe('avif');
    expect(negotiateFormat('*/*;q=0, image/jpeg')).toBe('jpeg');
  });

  test('lets the most specific range decide, not the order', () => {
    expect(negotiateFormat('image/webp;q=0.1, image/*;q=0.9')).toBe('jpeg');
    expect(negotiateFormat('*/*;q=0.1, image/avif;q=0.5')).toBe('avif');
  });

  test('breaks a tie reached only through a wildcard in favour of JPEG over AVIF', () => {
    expect(negotiateFormat('image/webp;q=0, image/jpeg;q=0.5, */*')).toBe('avif');
    expect(negotiateFormat('image/webp;q=0, image/jpeg, */*')).toBe('jpeg');
    expect(negotiateFormat('image/avif, image/jpeg')).toBe('avif');
  });

  test('falls back to WebP for garbage and for types it cannot produce', () => {
    for (const accept of [
      'garbage',
      ';;;,,,',
      'image/',
      '/webp',
      '*/webp',
      'image/png',
      'text/html, application/json',
    ]) {
      expect(negotiateFormat(accept), accept).toBe('webp');
    }
  });

  test('drops ranges with an invalid q instead of trusting them', () => {
    expect(negotiateFormat('image/jpeg;q=2')).toBe('webp');
    expect(negotiateFormat('image/jpeg;q=abc, image/avif;q=0.5')).toBe('avif');
    expect(negotiateFormat('image/avif;q=1.5, image/jpeg;q=0.1')).toBe('jpeg');
    expect(negotiateFormat('image/avif;q=-1')).toBe('webp');
  });

  test('ignores other parameters and accept-extensions', () => {
    expect(negotiateFormat('image/jpeg;level=1;q=0.9;foo=bar, image/webp;q=0.5')).toBe('jpeg');
  });
});
