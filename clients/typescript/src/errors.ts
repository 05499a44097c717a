/**
 * Errors thrown by {@link RemotePayloadCodec}.
 *
 * What must stay true: a message never contains payload bytes or a token. The Temporal SDK writes a
 * failed codec's error message into workflow history (as a workflow task failure), where it stays for
 * the namespace's retention. Messages carry only the operation, the HTTP status, the server's stable
 * error code, its short message, and the request id.
 */

/** Which codec call failed. */
export type CodecOperation = 'encode' | 'decode';

/** What every codec error knows about the failed call. None of it is secret. */
export interface CodecErrorDetails {
  /** `encode` or `decode`. */
  operation: CodecOperation;
  /** The Temporal namespace the call was for. */
  namespace?: string | undefined;
  /** HTTP status of the last attempt, when the server answered. */
  status?: number | undefined;
  /** The server's stable error code (`{"error":{"code":…}}`), e.g. `forbidden`, `kms-unavailable`; or a socket error code. */
  code?: string | undefined;
  /** Which payloads failed (`error.indexes` of a `decode-failed` reply, or unsealed encode replies). */
  indexes?: readonly number[] | undefined;
  /** The server's human message (`error.message`), kept out of `message`. */
  serverMessage?: string | undefined;
  /** The `X-Request-Id` of the last attempt (the server's echo, else the one this client sent). */
  requestId?: string | undefined;
  /** How many HTTP attempts were made (1 + retries). */
  attempts?: number | undefined;
  /** A non-secret cause, e.g. a socket error. */
  cause?: unknown;
}

/**
 * Base class: any failure of a remote encode or decode. Nothing is ever returned unencrypted.
 * `message` reads like `remote codec encode (namespace "payments") failed: <what> [HTTP 403; code=forbidden; request_id=…]`.
 */
export class CodecError extends Error {
  readonly operation: CodecOperation;
  readonly namespace: string | undefined;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly indexes: readonly number[] | undefined;
  readonly serverMessage: string | undefined;
  readonly requestId: string | undefined;
  readonly attempts: number | undefined;

  constructor(summary: string, details: CodecErrorDetails) {
    super(
      formatMessage(summary, details),
      details.cause === undefined ? undefined : { cause: details.cause },
    );
    this.name = new.target.name;
    this.operation = details.operation;
    this.namespace = details.namespace;
    this.status = details.status;
    this.code = details.code;
    this.indexes = details.indexes;
    this.serverMessage = details.serverMessage;
    this.requestId = details.requestId;
    this.attempts = details.attempts;
  }
}

/**
 * The codec server could not be reached or said it is temporarily unable to serve (502/503/504/429,
 * connection refused or reset, timeout), after the bounded retries. Temporal fails the task and retries it.
 */
export class CodecUnavailableError extends CodecError {}

/** 401: no token, or the server could not verify it (bad signature, wrong issuer/audience, expired). */
export class CodecUnauthorizedError extends CodecError {}

/** 403: the token is valid but the namespace's policy does not allow this operation to its subject. */
export class CodecForbiddenError extends CodecError {}

/**
 * 400/413/415: the server refused the request itself (malformed payloads, unknown namespace, a payload
 * that does not open, too many or too large payloads). `code` says which.
 */
export class CodecBadRequestError extends CodecError {}

/**
 * The server answered 200 with a reply this client refuses: not Payloads JSON, another number of
 * payloads than sent, or (encode, with `verifySealed`) payloads that are not `binary/kms-envelope`.
 */
export class CodecResponseError extends CodecError {}

/** The token source failed: the token function threw or returned nothing, or `tokenFile` is unreadable or empty. */
export class CodecTokenError extends CodecError {}

/** Invalid options given to `new RemotePayloadCodec(...)`. */
export class CodecConfigurationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecConfigurationError';
  }
}

function formatMessage(summary: string, d: CodecErrorDetails): string {
  let head = `remote codec ${d.operation}`;
  if (d.namespace !== undefined) head += ` (namespace ${JSON.stringify(d.namespace)})`;
  const facts: string[] = [];
  if (d.status !== undefined) facts.push(`HTTP ${d.status}`);
  if (d.code !== undefined) facts.push(`code=${d.code}`);
  if (d.indexes !== undefined && d.indexes.length > 0) facts.push(`indexes=${d.indexes.join(',')}`);
  if (d.requestId !== undefined) facts.push(`request_id=${d.requestId}`);
  if (d.attempts !== undefined && d.attempts > 1) facts.push(`attempts=${d.attempts}`);
  return `${head} failed: ${summary}${facts.length > 0 ? ` [${facts.join('; ')}]` : ''}`;
}

/** Keep a server-provided text short and printable before it goes into a message. */
export function sanitizeServerText(text: unknown, max = 200): string | undefined {
  if (typeof text !== 'string' || text.length === 0) return undefined;
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
