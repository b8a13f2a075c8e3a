/**
 * Reading a password without it ever reaching argv, the environment or the screen: one line from
 * a pipe, or a no-echo prompt on a terminal.
 */
import { MAX_PASSWORD_LENGTH } from '../auth/user-file.ts';

export type CliInput = NodeJS.ReadableStream & {
  isTTY?: boolean;
  setRawMode?: (raw: boolean) => unknown;
};

export class InputError extends Error {
  /** Exit status: 130 for an interrupted prompt, as a shell reports Ctrl-C. */
  readonly code: number;
  constructor(message: string, code = 1) {
    super(message);
    this.name = 'InputError';
    this.code = code;
  }
}

/** Four bytes per character at most, plus a CRLF: anything longer is refused unread. */
const MAX_LINE_BYTES = MAX_PASSWORD_LENGTH * 4 + 2;

/**
 * Reads one line: up to the first LF (a CR before it is dropped too) or the end of input.
 * Returns null when the input ends before any byte arrives. Stops reading at the line's end,
 * so a terminal user can type it too.
 */
export async function readPasswordLine(input: CliInput): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  const bytes = await new Promise<Buffer | null>((resolve, reject) => {
    const finish = (result: Buffer | null, error?: Error): void => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', onError);
      input.pause();
      if (error) reject(error);
      else resolve(result);
    };
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const newline = buf.indexOf(0x0a);
      chunks.push(newline === -1 ? buf : buf.subarray(0, newline));
      size += newline === -1 ? buf.length : newline;
      if (size > MAX_LINE_BYTES) finish(null, new InputError('the password on stdin is too long'));
      else if (newline !== -1) finish(Buffer.concat(chunks));
    };
    const onEnd = (): void => finish(size === 0 && chunks.length === 0 ? null : Buffer.concat(chunks));
    const onError = (error: Error): void => finish(null, error);
    input.on('data', onData);
    input.on('end', onEnd);
    input.on('error', onError);
    input.resume();
  });
  if (bytes === null) return null;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InputError('the password on stdin is not valid UTF-8');
  }
  return text.endsWith('\r') ? text.slice(0, -1) : text;
}

/**
 * Asks on the terminal with echo off (raw mode), handling Enter, Backspace, Ctrl-U, Ctrl-C and
 * Ctrl-D. The prompt goes to stderr so that stdout stays clean for scripts.
 */
export async function promptHidden(
  input: CliInput,
  output: NodeJS.WritableStream,
  prompt: string,
): Promise<string> {
  if (!input.setRawMode) throw new InputError('cannot turn off echo on this input');
  const setRawMode = input.setRawMode.bind(input);
  // Echo goes off before the prompt shows, so a reply typed the instant it appears is not echoed.
  setRawMode(true);
  output.write(prompt);
  try {
    return await new Promise<string>((resolve, reject) => {
      let chars: string[] = [];
      const done = (error: InputError | null): void => {
        input.removeListener('data', onData);
        input.removeListener('end', onEnd);
        input.pause();
        output.write('\n');
        if (error) reject(error);
        else resolve(chars.join(''));
      };
      const onData = (chunk: Buffer | string): void => {
        for (const ch of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') return done(null);
          if (ch === '\u0003') return done(new InputError('cancelled', 130));
          if (ch === '\u0004') return chars.length === 0 ? done(new InputError('cancelled', 130)) : undefined;
          if (ch === '\u007f' || ch === '\b') chars.pop();
          else if (ch === '\u0015') chars = [];
          else if (ch >= ' ') chars.push(ch);
          if (chars.length > MAX_PASSWORD_LENGTH) return done(new InputError('the password is too long'));
        }
      };
      const onEnd = (): void => done(new InputError('cancelled', 130));
      input.on('data', onData);
      input.on('end', onEnd);
      input.resume();
    });
  } finally {
    setRawMode(false);
  }
}
