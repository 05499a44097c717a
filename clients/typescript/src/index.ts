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
  DEFAULT_BACKOFF_MS,
  DEFAULT_MAX_BACKOFF_MS,
  DEFAULT_MAX_RETRIES,
  DEFAULT_TIMEOUT_MS,
  SEALED_ENCODING,
  CLIENT_VERSION,
} from './codec';
export {
  CodecError,
  CodecUnavailableError,
  CodecUnauthorizedError,
  CodecForbiddenError,
  CodecBadRequestError,
  CodecResponseError,
  CodecTokenError,
  CodecConfigurationError,
  type CodecErrorDetails,
  type CodecOperation,
} from './errors';
export type { TokenProvider } from './token';
