/**
 * temporal-codec-client: a Temporal `PayloadCodec` backed by a remote temporal-codec-server.
 *
 * ```ts
 * const dataConverter = { payloadCodecs: [new RemotePayloadCodec({ endpoint, namespace, tokenFile })] };
 * ```
 */
export {
  RemotePayloadCodec,
  type RemotePayloadCodecOptions,
  DEFAULT_MAX_RETRIES,
  DEFAULT_TIMEOUT_MS,
  INITIAL_BACKOFF_MS,
  MAX_BACKOFF_MS,
  MAX_RETRY_AFTER_MS,
} from './codec';
export {
  CodecError,
  CodecUnavailableError,
  CodecUnauthorizedError,
  CodecForbiddenError,
  CodecBadRequestError,
  CodecProtocolError,
  CodecTokenError,
  CodecConfigurationError,
  type CodecErrorDetails,
  type CodecOperation,
} from './errors';
export type { TokenProvider } from './token';
