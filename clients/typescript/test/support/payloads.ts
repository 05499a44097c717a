/** Payload helpers and the "no secret in this error" check used across the tests. */
import * as assert from 'node:assert/strict';
import type { Payload } from '@temporalio/common';

const enc = new TextEncoder();
const dec = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return enc.encode(text);
}

export function text(b: Uint8Array | null | undefined): string {
  return dec.decode(b ?? new Uint8Array(0));
}

/** A payload as the SDK's JSON converter makes it. */
export function jsonPayload(value: unknown): Payload {
  return { metadata: { encoding: bytes('json/plain') }, data: bytes(JSON.stringify(value)) };
}

export function encodingOf(p: Payload): string {
  return text(p.metadata?.['encoding']);
}

/** Everything an error could leak through: message, stack, own enumerable fields, cause chain. */
export function everythingIn(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) {
      parts.push(e.message, e.stack ?? '', JSON.stringify(e), String(e));
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join('\n');
}

/** Asserts that none of the secrets (and none of their base64 forms) appear anywhere in the error. */
export function assertNoSecrets(err: unknown, secrets: string[]): void {
  const all = everythingIn(err);
  for (const secret of secrets) {
    const forms = [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')];
    for (const form of forms) {
      assert.ok(!all.includes(form), `error text contains a secret (${secret.slice(0, 8)}…): ${all.slice(0, 300)}`);
    }
  }
}

/** Awaits a promise that must reject, and returns the error. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected the call to fail, but it succeeded');
}
