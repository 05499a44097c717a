/**
 * One HTTP POST over a pooled keep-alive connection, with a whole-request deadline.
 *
 * Why node:http/https and not the global `fetch`: Node's `fetch` cannot be given a private CA per
 * client without the `undici` package (its dispatcher API is not exposed otherwise), and the process-wide
 * `NODE_EXTRA_CA_CERTS` would change trust for everything in the worker. An `https.Agent` takes `ca`,
 * pools keep-alive connections, and needs no dependency.
 */
import * as http from 'node:http';
import * as https from 'node:https';

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A failure before a complete reply arrived (refused, reset, timeout, TLS). Carries no payload data. */
export class TransportError extends Error {
  constructor(
    message: string,
    /** The system error code (`ECONNREFUSED`, `ETIMEDOUT`, `CERT_HAS_EXPIRED`, …). */
    readonly code: string,
    /** Whether trying again may help. */
    readonly retryable: boolean,
    /** The server's certificate was not accepted (waiting will not fix it). */
    readonly certificate = false,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** Replies larger than this are refused: a codec reply is at most a few times the request. */
const MAX_REPLY_BYTES = 256 * 1024 * 1024;

/** Certificate verification failures: the certificate is wrong (or caFile is), not the network. */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export class Transport {
  private readonly agent: http.Agent;
  private readonly client: typeof http | typeof https;

  constructor(secure: boolean, ca: Buffer | undefined) {
    const agentOptions: https.AgentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: 32, maxFreeSockets: 8 };
    if (secure) {
      if (ca !== undefined) agentOptions.ca = ca;
      this.agent = new https.Agent(agentOptions);
      this.client = https;
    } else {
      this.agent = new http.Agent(agentOptions);
      this.client = http;
    }
  }

  post(url: URL, headers: Record<string, string>, body: Buffer, timeoutMs: number): Promise<HttpReply> {
    return new Promise<HttpReply>((resolve, reject) => {
      let settled = false;
      const finish = (err: TransportError | undefined, reply?: HttpReply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else if (reply) resolve(reply);
      };
      let req: http.ClientRequest;
      try {
        req = this.client.request(url, {
          method: 'POST',
          agent: this.agent,
          headers: { ...headers, 'Content-Length': String(body.length) },
        });
      } catch (err) {
        // Node names the offending header, never its value.
        reject(new TransportError(`request not sent: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code ?? 'ERR_REQUEST', false));
        return;
      }
      const timer = setTimeout(() => {
        const err = new TransportError(`no complete reply within ${timeoutMs} ms`, 'ETIMEDOUT', true);
        finish(err);
        req.destroy(err);
      }, timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => finish(toTransportError(err)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_REPLY_BYTES) {
            const err = new TransportError(`reply larger than ${MAX_REPLY_BYTES} bytes`, 'EREPLYTOOLARGE', false);
            finish(err);
            req.destroy(err);
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', (err: NodeJS.ErrnoException) => finish(toTransportError(err)));
        res.on('aborted', () => finish(new TransportError('reply aborted', 'ECONNRESET', true)));
        res.on('end', () => {
          finish(undefined, { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks, size) });
        });
      });
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function toTransportError(err: NodeJS.ErrnoException): TransportError {
  if (err instanceof TransportError) return err;
  const code = typeof err.code === 'string' ? err.code : 'ERR_NETWORK';
  const certificate = CERTIFICATE_CODES.has(code);
  const tls = certificate || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code === 'EPROTO';
  // Node's socket messages name the address and the system call, never the request body or headers.
  return new TransportError(tls ? `TLS failure: ${err.message}` : err.message, code, !tls, certificate);
}
