import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Secrets the server generates on first start and keeps in the data dir (mode 0600), unless the
 * operator provides them. Two instances starting at once on a shared data dir end up with the
 * same key instead of overwriting each other's.
 */
async function loadOrCreate(file: string, create: () => string | Buffer): Promise<Buffer> {
  try {
    return await fs.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written whole to a temp file, then linked into place: link() fails if the key appeared
  // meanwhile, so another instance never reads a half-written key and both end up with one key.
  const temp = `${file}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`;
  await fs.writeFile(temp, create(), { mode: 0o600, flag: 'wx' });
  try {
    await fs.link(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    await fs.rm(temp, { force: true });
  }
  return fs.readFile(file);
}

export async function loadSigningKey(file: string): Promise<crypto.KeyObject> {
  const pem = await loadOrCreate(file, () =>
    crypto.generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }),
  );
  const key = crypto.createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the JWT key in ${file} is not an Ed25519 private key`);
  }
  return key;
}

export async function loadHmacKey(file: string): Promise<Buffer> {
  const key = await loadOrCreate(file, () => crypto.randomBytes(32).toString('base64') + '\n');
  const decoded = Buffer.from(key.toString('utf8').trim(), 'base64');
  if (decoded.length < 32) throw new Error(`the key in ${file} must hold at least 32 random bytes, base64`);
  return decoded;
}
