/**
 * Temporal `Payload` objects ⇄ the proto3 JSON of `temporal.api.common.v1.Payloads` that the codec
 * server speaks: `{"payloads":[{"metadata":{"k":"<b64>"},"data":"<b64>","externalPayloads":[{"sizeBytes":"123"}]}]}`.
 *
 * What must stay true: metadata, data and `externalPayloads` survive a round trip unchanged, and a reply
 * that does not have this shape is rejected (never half-used).
 */
import type { Payload } from '@temporalio/common';

/** One payload as proto3 JSON. */
export interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
  externalPayloads?: JsonExternalPayload[];
}

/** proto3 JSON writes int64 as a decimal string. */
export interface JsonExternalPayload {
  sizeBytes?: string;
}

type ExternalPayloadDetails = NonNullable<Payload['externalPayloads']>[number];
type SizeBytes = NonNullable<ExternalPayloadDetails['sizeBytes']>;

export function payloadsToJson(payloads: readonly Payload[]): { payloads: JsonPayload[] } {
  return { payloads: payloads.map(payloadToJson) };
}

function payloadToJson(p: Payload): JsonPayload {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(p.metadata ?? {})) {
    if (value !== null && value !== undefined) metadata[key] = toBase64(value);
  }
  const out: JsonPayload = { metadata, data: toBase64(p.data ?? new Uint8Array(0)) };
  if (p.externalPayloads && p.externalPayloads.length > 0) {
    out.externalPayloads = p.externalPayloads.map((e) => {
      const size = int64ToString(e?.sizeBytes);
      return size === undefined ? {} : { sizeBytes: size };
    });
  }
  return out;
}

/** Why a reply is unusable; the caller wraps it in a `CodecResponseError`. Never includes reply content. */
export class ReplyShapeError extends Error {}

export function payloadsFromJson(body: unknown, expectedCount: number): Payload[] {
  if (!isObject(body) || !Array.isArray(body['payloads'])) {
    throw new ReplyShapeError('reply is not a Payloads JSON object');
  }
  const list: unknown[] = body['payloads'];
  if (list.length !== expectedCount) {
    throw new ReplyShapeError(`reply has ${list.length} payloads, the request had ${expectedCount}`);
  }
  return list.map((item, index) => payloadFromJson(item, index));
}

function payloadFromJson(item: unknown, index: number): Payload {
  if (!isObject(item)) throw new ReplyShapeError(`reply payload ${index} is not an object`);
  const metadata: Record<string, Uint8Array> = {};
  const rawMetadata = item['metadata'];
  if (rawMetadata !== undefined && rawMetadata !== null) {
    if (!isObject(rawMetadata)) throw new ReplyShapeError(`reply payload ${index} has invalid metadata`);
    for (const [key, value] of Object.entries(rawMetadata)) {
      if (typeof value !== 'string') throw new ReplyShapeError(`reply payload ${index} has invalid metadata`);
      metadata[key] = fromBase64(value, index);
    }
  }
  const rawData = item['data'];
  if (rawData !== undefined && rawData !== null && typeof rawData !== 'string') {
    throw new ReplyShapeError(`reply payload ${index} has invalid data`);
  }
  const payload: Payload = { metadata, data: fromBase64(rawData ?? '', index) };
  const rawExternal = item['externalPayloads'];
  if (rawExternal !== undefined && rawExternal !== null) {
    if (!Array.isArray(rawExternal)) throw new ReplyShapeError(`reply payload ${index} has invalid externalPayloads`);
    payload.externalPayloads = rawExternal.map((e: unknown) => {
      if (!isObject(e)) throw new ReplyShapeError(`reply payload ${index} has invalid externalPayloads`);
      const size = e['sizeBytes'];
      if (size === undefined || size === null) return {};
      return { sizeBytes: parseInt64(size, index) };
    });
  }
  return payload;
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function fromBase64(text: string, index: number): Uint8Array {
  if (!BASE64.test(text)) throw new ReplyShapeError(`reply payload ${index} is not valid base64`);
  // Copy into a plain Uint8Array: a Buffer may be a view into Node's shared pool.
  return new Uint8Array(Buffer.from(text, 'base64'));
}

/** protobufjs gives int64 as a Long (or number/string); proto3 JSON wants a decimal string. */
function int64ToString(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' || typeof value === 'bigint') return value.toString();
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { toString: unknown }).toString === 'function') {
    return String(value);
  }
  return undefined;
}

/**
 * int64 from JSON (a string, or a number from lenient writers). A safe integer becomes a number, which
 * protobufjs encodes like a Long; larger values stay a decimal string, which protobufjs also accepts.
 * This keeps the package free of a runtime dependency on `long`.
 */
function parseInt64(value: unknown, index: number): SizeBytes {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^-?\d{1,20}$/.test(text)) {
    throw new ReplyShapeError(`reply payload ${index} has an invalid sizeBytes`);
  }
  const n = Number(text);
  return (Number.isSafeInteger(n) ? n : text) as unknown as SizeBytes;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
