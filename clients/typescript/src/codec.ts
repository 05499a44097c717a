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
import type { IncomingHttpHeaders } from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';

import {
  CodecBadRequestError,
  CodecConfigurationError,
  CodecError,
  CodecForbiddenError,
  type CodecOperation,
  CodecProtocolError,
  CodecTokenError,
  CodecUnauthorizedError,
  CodecUnavailableError,
  sanitizeServerText,
} from './errors';
import { payloadsFromJson, payloadsToJson, ReplyShapeError } from './payloads';
import { fileToken, functionToken, staticToken, type TokenProvider, type TokenSource, TokenSourceError } from './token';
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
  /** Retries after the first attempt, for 502/503/504/429 and connection failures. Default 3. */
  maxRetries?: number | undefined;
  /** PEM file of the CA(s) that signed the server's certificate (replaces Node's default roots for this codec). */
  caFile?: string | undefined;
  /** Extra headers on every request (e.g. for an ingress). Cannot replace the protocol's own headers. */
  headers?: Record<string, string> | undefined;
}

/** Defaults shared with the Python client. */
export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_RETRIES = 3;
/** First backoff delay; it doubles per retry, with jitter, up to {@link MAX_BACKOFF_MS}. */
export const INITIAL_BACKOFF_MS = 200;
export const MAX_BACKOFF_MS = 5_000;
/** A server's `Retry-After` is honoured up to this long. */
export const MAX_RETRY_AFTER_MS = 30_000;

const RESERVED_HEADERS = new Set(['content-type', 'content-length', 'x-namespace', 'host', 'transfer-encoding', 'connection']);
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);

export class RemotePayloadCodec implements PayloadCodec {
  readonly endpoint: string;
  readonly namespace: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;

  private readonly base: string;
  private readonly token: TokenSource | undefined;
  private readonly extraHeaders: Record<string, string>;
  private readonly transport: Transport;

  constructor(options: RemotePayloadCodecOptions) {
    const opts = validate(options);
    this.endpoint = opts.endpoint;
    this.namespace = opts.namespace;
    this.timeoutMs = opts.timeoutMs;
    this.maxRetries = opts.maxRetries;
    this.base = opts.endpoint.replaceAll('{namespace}', encodeURIComponent(opts.namespace)).replace(/\/+$/, '');
    this.extraHeaders = opts.headers;
    if (typeof opts.token === 'string') this.token = staticToken(opts.token);
    else if (typeof opts.token === 'function') this.token = functionToken(opts.token);
    else if (opts.tokenFile !== undefined) this.token = fileToken(opts.tokenFile);
    else this.token = undefined;

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
  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('encode', payloads);
  }

  /** Open payloads (ones the server did not seal come back unchanged). */
  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call('decode', payloads);
  }

  /** Close pooled connections. Optional: idle connections do not keep the process alive. */
  close(): void {
    this.transport.close();
  }

  private async call(operation: CodecOperation, payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return [];
    const url = new URL(`${this.base}/${operation}`);
    const body = Buffer.from(JSON.stringify(payloadsToJson(payloads)), 'utf8');
    const reply = await this.postWithRetries(operation, url, body);
    const requestId = header(reply.headers, 'x-request-id');
    let json: unknown;
    try {
      json = JSON.parse(reply.body.toString('utf8'));
    } catch {
      throw new CodecProtocolError('the server replied with invalid JSON', { operation, status: reply.status, requestId });
    }
    try {
      return payloadsFromJson(json, payloads.length);
    } catch (err) {
      if (err instanceof ReplyShapeError) {
        throw new CodecProtocolError(err.message, { operation, status: reply.status, requestId });
      }
      throw err;
    }
  }

  /** Returns a 200 reply or throws the error that fits the last attempt. */
  private async postWithRetries(operation: CodecOperation, url: URL, body: Buffer): Promise<HttpReply> {
    for (let attempt = 1; ; attempt++) {
      const requestId = randomUUID();
      const headers = await this.headers(operation, requestId, attempt);
      let reply: HttpReply;
      try {
        reply = await this.transport.post(url, headers, body, this.timeoutMs);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        if (err.retryable && attempt <= this.maxRetries) {
          await sleep(backoff(attempt));
          continue;
        }
        throw new CodecUnavailableError(`cannot reach the codec server at ${url.origin}: ${err.message}`, {
          operation,
          code: err.code,
          requestId,
          attempts: attempt,
          cause: err,
        });
      }
      if (reply.status === 200) return reply;
      if (RETRYABLE_STATUSES.has(reply.status) && attempt <= this.maxRetries) {
        await sleep(retryAfter(reply.headers) ?? backoff(attempt));
        continue;
      }
      throw errorFor(operation, this.namespace, reply, requestId, attempt);
    }
  }

  private async headers(operation: CodecOperation, requestId: string, attempt: number): Promise<Record<string, string>> {
    const headers: Record<string, string> = {
      ...this.extraHeaders,
      'Content-Type': 'application/json',
      Accept: 'application/json',
      'X-Namespace': this.namespace,
      'X-Request-Id': requestId,
    };
    if (this.token) {
      let token: string | undefined;
      try {
        token = await this.token();
      } catch (err) {
        if (err instanceof TokenSourceError) {
          throw new CodecTokenError(err.message, { operation, requestId, attempts: attempt });
        }
        throw err;
      }
      if (token !== undefined) headers['Authorization'] = `Bearer ${token}`;
    }
    return headers;
  }
}

function errorFor(
  operation: CodecOperation,
  namespace: string,
  reply: HttpReply,
  sentRequestId: string,
  attempts: number,
): CodecError {
  const { code, message } = parseErrorBody(reply);
  const details = {
    operation,
    status: reply.status,
    code,
    requestId: header(reply.headers, 'x-request-id') ?? sentRequestId,
    attempts,
  };
  const said = message === undefined ? '' : `: ${message}`;
  switch (reply.status) {
    case 401:
      return new CodecUnauthorizedError(`the codec server did not accept the token${said}`, details);
    case 403:
      return new CodecForbiddenError(`the codec server's policy does not allow ${operation} in namespace ${namespace}${said}`, details);
    case 400:
    case 413:
    case 415:
    case 422:
      return new CodecBadRequestError(`the codec server refused the request${said}`, details);
    case 429:
    case 502:
    case 503:
    case 504:
      return new CodecUnavailableError(`the codec server is unavailable${said}`, details);
    default:
      if (reply.status >= 500) return new CodecError(`the codec server failed${said}`, details);
      return new CodecProtocolError(`unexpected reply from the codec server${said}`, details);
  }
}

function parseErrorBody(reply: HttpReply): { code: string | undefined; message: string | undefined } {
  if (reply.body.length === 0 || reply.body.length > 64 * 1024) return { code: undefined, message: undefined };
  try {
    const parsed: unknown = JSON.parse(reply.body.toString('utf8'));
    const error = (parsed as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const code = sanitizeServerText(error?.code, 64);
    return { code, message: sanitizeServerText(error?.message) };
  } catch {
    return { code: undefined, message: undefined };
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  const text = Array.isArray(value) ? value[0] : value;
  return sanitizeServerText(text, 128);
}

/** Full-jitter exponential backoff: uniform in [d/2, d] where d = min(max, initial · 2^(attempt-1)). */
function backoff(attempt: number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** `Retry-After` as delta-seconds or an HTTP date, in ms, capped; undefined when absent or unreadable. */
function retryAfter(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['retry-after'];
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  let ms: number;
  if (/^\s*\d+\s*$/.test(value)) ms = Number(value) * 1000;
  else {
    const at = Date.parse(value);
    if (Number.isNaN(at)) return undefined;
    ms = at - Date.now();
  }
  // A little jitter so that many workers told the same Retry-After do not return in lockstep.
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) + Math.random() * 100;
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
  if (typeof token === 'string' && token.trim() === '') throw new CodecConfigurationError('token is empty');
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
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower)) throw new CodecConfigurationError(`headers cannot set ${name}`);
    if (lower === 'authorization' && (token !== undefined || tokenFile !== undefined)) {
      throw new CodecConfigurationError('headers cannot set Authorization together with token or tokenFile');
    }
    if (typeof value !== 'string') throw new CodecConfigurationError(`header ${name} must be a string`);
    headers[name] = value;
  }
  return {
    endpoint,
    namespace,
    token: typeof token === 'string' ? token.trim() : token,
    tokenFile,
    timeoutMs,
    maxRetries,
    caFile,
    headers,
  };
}
