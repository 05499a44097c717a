/**
 * Where the bearer token comes from: a fixed string, a (possibly async) function, or a file.
 *
 * What must stay true: a token file is re-read as soon as it changes. Kubernetes rotates projected
 * service-account tokens by swapping a symlink (`..data`) to a new directory, so the path's target
 * gets a new inode; other writers replace the file in place. `stat` follows the symlink, and any change
 * of device, inode, size or mtime triggers a re-read. The token itself never appears in an error.
 */
import { promises as fs } from 'node:fs';

/** A token, or a function returning one (called before every HTTP attempt; cache inside it if costly). */
export type TokenProvider = string | (() => string | Promise<string>);

export interface TokenSource {
  get(): Promise<string | undefined>;
  /** Forget a cached token after a 401; true when another read could give a different token. */
  invalidate(): boolean;
}

/** Thrown by a token source; the codec wraps it in a `CodecTokenError`. Messages carry no token. */
export class TokenSourceError extends Error {}

export function noToken(): TokenSource {
  return { get: () => Promise.resolve(undefined), invalidate: () => false };
}

export function staticToken(token: string): TokenSource {
  return { get: () => Promise.resolve(token), invalidate: () => false };
}

export function functionToken(fn: () => string | Promise<string>): TokenSource {
  // The function is called before every attempt anyway, so a 401 has nothing to invalidate here.
  const get = async (): Promise<string> => {
    let value: unknown;
    try {
      value = await fn();
    } catch (err) {
      // The function's own error text is not repeated: it could contain anything.
      throw new TokenSourceError(`the token function threw ${errorName(err)}`);
    }
    if (typeof value !== 'string' || value.trim() === '') {
      throw new TokenSourceError('the token function returned no token');
    }
    if (!isHeaderSafeToken(value.trim())) throw new TokenSourceError('the token function returned a token with characters not allowed in a header');
    return value.trim();
  };
  return { get, invalidate: () => false };
}

interface FileStamp {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

export function fileToken(path: string): TokenSource {
  let cached: { stamp: FileStamp; token: string } | undefined;
  const get = async (): Promise<string> => {
    let stamp: FileStamp;
    try {
      const st = await fs.stat(path);
      stamp = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      throw new TokenSourceError(`tokenFile ${path} cannot be read (${errorCode(err)})`);
    }
    if (cached && sameStamp(cached.stamp, stamp)) return cached.token;
    let text: string;
    try {
      text = await fs.readFile(path, 'utf8');
    } catch (err) {
      throw new TokenSourceError(`tokenFile ${path} cannot be read (${errorCode(err)})`);
    }
    const token = text.trim();
    if (token === '') throw new TokenSourceError(`tokenFile ${path} is empty`);
    if (!isHeaderSafeToken(token)) throw new TokenSourceError(`tokenFile ${path} holds characters not allowed in a header (more than one line?)`);
    cached = { stamp, token };
    return token;
  };
  // A rewrite within the same mtime tick with the same size is invisible to stat: after a 401, read again.
  const invalidate = (): boolean => {
    const had = cached !== undefined;
    cached = undefined;
    return had;
  };
  return { get, invalidate };
}

/** A bearer token is one line of visible ASCII (RFC 6750 b64token and JWTs are far narrower). */
export function isHeaderSafeToken(token: string): boolean {
  return /^[\x21-\x7e]+$/.test(token);
}

function sameStamp(a: FileStamp, b: FileStamp): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : errorName(err);
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err;
}
