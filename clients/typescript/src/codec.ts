/**
 * `RemotePayloadCodec`: a `PayloadCodec` for the Temporal TypeScript SDK that seals and opens payloads
 * through a temporal-codec-server (`POST <endpoint>/encode`, `POST <endpoint>/decode`).
 *
 * What must stay true:
 * - one HTTP call per payload list, never one per payload;
 * - no plaintext fallback: if the server cannot seal, `encode` throws (the workflow task fails and
 *   Temporal retries it), it never returns its input;
 * - the reply has exactly as many payloads as the request, or the call fails;
 * - retries are bounded (`maxRetries`), only for failures a retry can fix (502/503/504/429, refused or
 *   reset connections, timeouts), with exponential backoff and jitter, honouring `Retry-After`;
 * - error messages never contain payload bytes or tokens (see errors.ts).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type IncomingHttpHeaders, validateHeaderName, validateHeaderValue } from 'node:http';
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';

import {
  CodecBadRequestError,
  CodecConfigurationError,
  CodecError,
  CodecForbiddenError,
  type CodecOperation,
  CodecResponseError,
  CodecTokenError,
  CodecUnauthorizedError,
  CodecUnavailableError,
  sanitizeServerText,
} from './errors';
import { payloadsFromJson, payloadsToJson, ReplyShapeError } from './payloads';
import { fileToken, functionToken, isHeaderSafeToken, noToken, staticToken, type TokenProvider, type TokenSource, TokenSourceError } from './token';
import { type HttpReply, Transport, TransportError } from './transport';

/** Options of {@link RemotePayloadCodec}. The Python client (`temporal_codec_client`) has the same ones. */
export interface RemotePayloadCodecOptions {
  /**
   * Base URL of the codec server, e.g. `https://codec.example.com` or `https://host/codec`. `/encode`
   * and `/decode` are appended. `{namespace}` in it is replaced by the namespace (as the CLI does).
   */
  endpoint: string;
  /** Temporal namespace, sent as `X-Namespace`. The server binds sealed payloads to it. */
  namespace: string;
  /** Bearer token, or a function returning one (may be async; called before every attempt). */
  token?: TokenProvider | undefined;
  /** File holding the bearer token (e.g. a projected service-account token); re-read when it changes. */
  tokenFile?: string | undefined;
  /** Deadline of one HTTP attempt, in milliseconds. Default 10 000. */
  timeoutMs?: number | undefined;
  /**
   * Retries after the first attempt, for 502/503/504/429, refused or reset connections and timeouts
   * (so at most `maxRetries + 1` attempts); 0 disables retries. Default 3.
   */
  maxRetries?: number | undefined;
  /** First retry wait in ms before jitter; doubles per retry (full jitter). Default 200. */
  backoffMs?: number | undefined;
  /** Longest single wait in ms, also the cap on a server's `Retry-After`. Default 10 000. */
  maxBackoffMs?: number | undefined;
  /**
   * Refuse an encode reply whose payloads are not `binary/kms-envelope`, so a misrouted endpoint or a
   * proxy can never let plaintext into history. Default true.
   */
  verifySealed?: boolean | undefined;
  /** PEM file of the CA(s) that signed the server's certificate (replaces Node's default roots for this codec). */
  caFile?: string | undefined;
  /** Extra headers on every request (e.g. for an ingress). Cannot replace the protocol's own headers. */
  headers?: Record<string, string> | undefined;
}

/** Defaults shared with the Python client (`timeout=10.0, max_retries=3, backoff=0.2, max_backoff=10.0`). */
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RETRIES = 3;
export const DEFAULT_BACKOFF_MS = 200;
export const DEFAULT_MAX_BACKOFF_MS = 10_000;

/** `metadata.encoding` of every payload temporal-codec-server seals. */
export const SEALED_ENCODING = 'binary/kms-envelope';

/** This package's version (sent in `User-Agent`; a test keeps it equal to package.json's). */
export const CLIENT_VERSION = '0.1.0';

const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'x-namespace', 'x-request-id', 'host', 'transfer-encoding', 'connection']);
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);

export class RemotePayloadCodec implements PayloadCodec {
  readonly endpoint: string;
  readonly namespace: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly verifySealed: boolean;

  private readonly base: string;
  private readonly token: TokenSource;
  private readonly extraHeaders: Record<string, string>;
  private readonly transport: Transport;

  constructor(options: RemotePayloadCodecOptions) {
    const opts = validate(options);
    this.endpoint = opts.endpoint;
    this.namespace = opts.namespace;
    this.timeoutMs = opts.timeoutMs;
    this.maxRetries = opts.maxRetries;
    this.backoffMs = opts.backoffMs;
    this.maxBackoffMs = opts.maxBackoffMs;
    this.verifySealed = opts.verifySealed;
    this.base = opts.endpoint.replaceAll('{namespace}', encodeURIComponent(opts.namespace)).replace(/\/+$/, '');
    this.extraHeaders = opts.headers;
    if (typeof opts.token === 'string') this.token = staticToken(opts.token);
    else if (typeof opts.token === 'function') this.token = functionToken(opts.token);
    else if (opts.tokenFile !== undefined) this.token = fileToken(opts.tokenFile);
    else this.token = noToken();

    let ca: Buffer | undefined;
    if (opts.caFile !== undefined) {
      try {
        ca = readFileSync(opts.caFile);
      } catch (err) {
        throw new CodecConfigurationError(`caFile ${opts.caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    }
    this.transport = new Transport(new URL(this.base).protocol === 'https:', ca);
  }

  /** Seal payloads. Throws a {@link CodecError} rather than ever returning them unencrypted. */
  async encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    this.checkNamespace('encode', context);
    const sealed = await this.call('encode', payloads);
    if (this.verifySealed) {
      const unsealed = sealed.flatMap((p, i) => (encodingOf(p) === SEALED_ENCODING ? [] : [i]));
      if (unsealed.length > 0) {
        throw new CodecResponseError(`encode reply holds payloads that are not ${SEALED_ENCODING}`, {
          operation: 'encode',
          namespace: this.namespace,
          indexes: unsealed,
        });
      }
    }
    return sealed;
  }

  /**
   * Open payloads (ones the server did not seal come back unchanged). With `verifySealed`, a reply
   * that still holds sealed payloads (a denied decode under `on_deny = "passthrough"`) is an error
   * rather than bytes the SDK cannot deserialize.
   */
  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    this.checkNamespace('decode', context);
    const opened = await this.call('decode', payloads);
    if (this.verifySealed) {
      const stillSealed = opened.flatMap((p, i) => (encodingOf(p) === SEALED_ENCODING ? [i] : []));
      if (stillSealed.length > 0) {
        throw new CodecResponseError('decode reply is still sealed (a denied decode under on_deny = passthrough?)', {
          operation: 'decode',
          namespace: this.namespace,
          indexes: stillSealed,
        });
      }
    }
    return opened;
  }

  /** Close pooled connections. Optional: idle connections do not keep the process alive. */
  close(): void {
    this.transport.close();
  }

  /**
   * The SDK says which namespace a payload belongs to. Sealing it under another one would make it
   * unreadable where it is stored (the Web UI and CLI decode with the workflow's real namespace).
   */
  private checkNamespace(operation: CodecOperation, context: SerializationContext | undefined): void {
    const actual = context?.namespace;
    if (actual !== undefined && actual !== '' && actual !== this.namespace) {
      throw new CodecError(`the payload belongs to namespace ${JSON.stringify(actual)}; use one codec per namespace`, {
        operation,
        namespace: this.namespace,
        code: 'namespace-mismatch',
      });
    }
  }

  private async call(operation: CodecOperation, payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return [];
    const url = new URL(`${this.base}/${operation}`);
    const body = Buffer.from(JSON.stringify(payloadsToJson(payloads)), 'utf8');
    const { reply, requestId, attempts } = await this.postWithRetries(operation, url, body);
    const details = { operation, namespace: this.namespace, status: reply.status, requestId, attempts };
    let json: unknown;
    try {
      json = JSON.parse(reply.body.toString('utf8'));
    } catch {
      throw new CodecResponseError('the reply is not JSON', details);
    }
    try {
      return payloadsFromJson(json, payloads.length);
    } catch (err) {
      if (err instanceof ReplyShapeError) throw new CodecResponseError(err.message, details);
      throw err;
    }
  }

  /** Returns a 200 reply or throws the error that fits the last attempt. */
  private async postWithRetries(
    operation: CodecOperation,
    url: URL,
    body: Buffer,
  ): Promise<{ reply: HttpReply; requestId: string; attempts: number }> {
    const callId = randomUUID();
    let retriedUnauthorized = false;
    let sends = 0;
    for (let attempt = 1; ; attempt++) {
      const sentId = `${callId}.${++sends}`;
      const token = await this.currentToken(operation, sentId, attempt);
      const headers: Record<string, string> = {
        ...this.extraHeaders,
        'Content-Type': 'application/json',
        Accept: 'application/json',
        'X-Namespace': this.namespace,
        'X-Request-Id': sentId,
        'User-Agent': `temporal-codec-client-typescript/${CLIENT_VERSION} node/${process.versions.node}`,
      };
      if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;

      let reply: HttpReply;
      try {
        reply = await this.transport.post(url, headers, body, this.timeoutMs);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        const details = { operation, namespace: this.namespace, code: err.code, requestId: sentId, attempts: attempt, cause: err };
        if (err.certificate) {
          // Waiting does not fix a certificate: fail at once.
          throw new CodecError(`TLS certificate verification failed (see caFile): ${err.message}`, details);
        }
        if (err.retryable && attempt <= this.maxRetries) {
          await sleep(this.delay(attempt, undefined));
          continue;
        }
        throw new CodecUnavailableError(`cannot reach the codec server at ${url.origin}: ${err.message}`, details);
      }
      const requestId = header(reply.headers, 'x-request-id') ?? sentId;
      if (reply.status === 200) return { reply, requestId, attempts: attempt };
      if (reply.status === 401 && !retriedUnauthorized && this.token.invalidate()) {
        // tokenFile: a token rotated within one mtime tick is invisible to stat; read it again once.
        retriedUnauthorized = true;
        if ((await this.currentToken(operation, sentId, attempt)) !== token) {
          attempt--; // a rotated token is not a retry
          continue;
        }
      }
      if (RETRYABLE_STATUSES.has(reply.status) && attempt <= this.maxRetries) {
        await sleep(this.delay(attempt, retryAfterMs(reply.headers)));
        continue;
      }
      throw errorFor(operation, this.namespace, reply, requestId, attempt);
    }
  }

  /** Full jitter: uniform in [0, min(maxBackoff, backoff · 2^(attempt-1))], and at least `Retry-After` (capped). */
  private delay(attempt: number, retryAfter: number | undefined): number {
    const exponential = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (attempt - 1));
    const jittered = Math.random() * exponential;
    return retryAfter === undefined ? jittered : Math.max(jittered, Math.min(retryAfter, this.maxBackoffMs));
  }

  private async currentToken(operation: CodecOperation, requestId: string, attempt: number): Promise<string | undefined> {
    try {
      return await this.token.get();
    } catch (err) {
      if (err instanceof TokenSourceError) {
        throw new CodecTokenError(err.message, { operation, namespace: this.namespace, requestId, attempts: attempt });
      }
      throw err;
    }
  }
}

function errorFor(
  operation: CodecOperation,
  namespace: string,
  reply: HttpReply,
  requestId: string,
  attempts: number,
): CodecError {
  const { code, message, indexes } = parseErrorBody(reply);
  const details = { operation, namespace, status: reply.status, code, indexes, serverMessage: message, requestId, attempts };
  switch (reply.status) {
    case 401:
      return new CodecUnauthorizedError('token missing, invalid or expired', details);
    case 403:
      return new CodecForbiddenError("not allowed by the namespace's policy", details);
    case 400:
    case 413:
    case 415:
      return new CodecBadRequestError('request refused', details);
    case 429:
    case 502:
    case 503:
    case 504:
      return new CodecUnavailableError('codec server unavailable', details);
    default:
      return new CodecError('unexpected status', details);
  }
}

function parseErrorBody(reply: HttpReply): { code: string | undefined; message: string | undefined; indexes: number[] | undefined } {
  const none = { code: undefined, message: undefined, indexes: undefined };
  if (reply.body.length === 0 || reply.body.length > 64 * 1024) return none;
  try {
    const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
    const error = (parsed as { error?: { code?: unknown; message?: unknown; indexes?: unknown } } | null)?.error;
    const rawIndexes = error?.indexes;
    const indexes = Array.isArray(rawIndexes)
      ? rawIndexes.filter((i): i is number => Number.isInteger(i)).slice(0, 100)
      : undefined;
    return { code: sanitizeServerText(error?.code, 64), message: sanitizeServerText(error?.message), indexes };
  } catch {
    return none;
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return sanitizeServerText(text, 128);
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms; undefined when absent or unreadable. */
function retryAfterMs(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function encodingOf(p: Payload): string | undefined {
  const e = p.metadata?.['encoding'];
  return e ? Buffer.from(e.buffer, e.byteOffset, e.byteLength).toString('utf8') : undefined;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface ValidOptions {
  endpoint: string;
  namespace: string;
  token: TokenProvider | undefined;
  tokenFile: string | undefined;
  timeoutMs: number;
  maxRetries: number;
  backoffMs: number;
  maxBackoffMs: number;
  verifySealed: boolean;
  caFile: string | undefined;
  headers: Record<string, string>;
}

function validate(options: RemotePayloadCodecOptions): ValidOptions {
  if (typeof options !== 'object' || options === null) throw new CodecConfigurationError('options are required');
  const { endpoint, namespace, token, tokenFile, caFile } = options;
  if (typeof endpoint !== 'string' || endpoint === '') throw new CodecConfigurationError('endpoint is required');
  let url: URL;
  try {
    url = new URL(endpoint.replaceAll('{namespace}', 'ns'));
  } catch {
    throw new CodecConfigurationError('endpoint must be an absolute http:// or https:// URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CodecConfigurationError('endpoint must be an absolute http:// or https:// URL');
  }
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new CodecConfigurationError('endpoint must not carry a query string, fragment or credentials');
  }
  if (typeof namespace !== 'string' || namespace === '') throw new CodecConfigurationError('namespace is required');
  if (token !== undefined && tokenFile !== undefined) {
    throw new CodecConfigurationError('give either token or tokenFile, not both');
  }
  if (token !== undefined && typeof token !== 'string' && typeof token !== 'function') {
    throw new CodecConfigurationError('token must be a string or a function returning one');
  }
  if (typeof token === 'string' && !isHeaderSafeToken(token.trim())) {
    throw new CodecConfigurationError('token must be one non-empty line of visible ASCII characters');
  }
  if (tokenFile !== undefined && (typeof tokenFile !== 'string' || tokenFile === '')) {
    throw new CodecConfigurationError('tokenFile must be a path');
  }
  if (caFile !== undefined && url.protocol !== 'https:') {
    throw new CodecConfigurationError('caFile needs an https:// endpoint');
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new CodecConfigurationError('timeoutMs must be a positive number');
  const maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 20) {
    throw new CodecConfigurationError('maxRetries must be an integer from 0 to 20');
  }
  const backoffMs = options.backoffMs ?? DEFAULT_BACKOFF_MS;
  const maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
  if (!Number.isFinite(backoffMs) || backoffMs < 0) throw new CodecConfigurationError('backoffMs must be a number >= 0');
  if (!Number.isFinite(maxBackoffMs) || maxBackoffMs < backoffMs) {
    throw new CodecConfigurationError('maxBackoffMs must be a number >= backoffMs');
  }
  const verifySealed = options.verifySealed ?? true;
  if (typeof verifySealed !== 'boolean') throw new CodecConfigurationError('verifySealed must be a boolean');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower)) throw new CodecConfigurationError(`headers cannot set ${name}`);
    if (lower === 'authorization' && (token !== undefined || tokenFile !== undefined)) {
      throw new CodecConfigurationError('headers cannot set Authorization together with token or tokenFile');
    }
    if (typeof value !== 'string') throw new CodecConfigurationError(`header ${name} must be a string`);
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      throw new CodecConfigurationError(`header ${name} has a name or value not allowed in HTTP`);
    }
    headers[name] = value;
  }
  return {
    endpoint,
    namespace,
    token: typeof token === 'string' ? token.trim() : token,
    tokenFile,
    timeoutMs,
    maxRetries,
    backoffMs,
    maxBackoffMs,
    verifySealed,
    caFile,
    headers,
  };
}
