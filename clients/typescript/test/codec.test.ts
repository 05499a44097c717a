/**
 * RemotePayloadCodec against the real codec-server in dev mode (auth off, local key).
 */
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@temporalio/common';

import { CodecBadRequestError, CodecConfigurationError, CodecError, RemotePayloadCodec } from '../src';
import { devConfig } from './support/config';
import { assertNoSecrets, bytes, encodingOf, jsonPayload, rejection, text } from './support/payloads';
import { CodecServer, keygen } from './support/server';

const ENVELOPE = 'binary/kms-envelope';

describe('RemotePayloadCodec against the real server (dev mode)', () => {
  let server: CodecServer;
  let codec: RemotePayloadCodec;

  before(async () => {
    server = await CodecServer.start({
      config: ({ dir }) => {
        keygen(`${dir}/keys`);
        return devConfig({ dir });
      },
    });
    codec = new RemotePayloadCodec({ endpoint: server.url, namespace: 'payments' });
  });

  after(async () => {
    codec?.close();
    await server?.stop();
  });

  it('seals every payload of a list and opens them again, in order', async () => {
    const originals = [jsonPayload({ card: '4111 1111 1111 1111' }), jsonPayload('second'), jsonPayload(3)];

    const sealed = await codec.encode(originals);

    assert.equal(sealed.length, 3);
    for (const p of sealed) {
      assert.equal(encodingOf(p), ENVELOPE);
      assert.ok(!text(p.data).includes('4111'), 'sealed data must not contain the plaintext');
    }
    const opened = await codec.decode(sealed);
    assert.deepEqual(opened, originals);
  });

  it('preserves all metadata (binary values too), empty data and externalPayloads', async () => {
    const original: Payload = {
      metadata: {
        encoding: bytes('binary/plain'),
        'messageType': bytes('acme.v1.Order'),
        'x-binary': new Uint8Array([0, 255, 1, 254, 0]),
      },
      data: new Uint8Array(0),
      externalPayloads: [{ sizeBytes: 123 as never }, { sizeBytes: 9_007_199_254_740_000 as never }],
    };

    const [sealed] = await codec.encode([original]);
    assert.ok(sealed);
    assert.equal(encodingOf(sealed), ENVELOPE);
    assert.equal(sealed.metadata?.['x-binary'], undefined, 'original metadata must be inside the envelope');
    const [opened] = await codec.decode([sealed]);

    assert.ok(opened);
    assert.deepEqual(opened.metadata, original.metadata);
    assert.deepEqual(opened.data, new Uint8Array(0));
    assert.deepEqual(
      opened.externalPayloads?.map((e) => Number(e.sizeBytes)),
      [123, 9_007_199_254_740_000],
    );
  });

  it('passes payloads that are not sealed by the server through decode unchanged', async () => {
    const plain = jsonPayload({ hello: 'world' });
    const [sealed] = await codec.encode([jsonPayload('x')]);
    assert.ok(sealed);

    const out = await codec.decode([plain, sealed]);

    assert.deepEqual(out[0], plain);
    assert.equal(text(out[1]?.data), '"x"');
  });

  it('makes one HTTP call per list, whatever its length', async () => {
    const before = await encodeRequestCount(server);
    await codec.encode(Array.from({ length: 25 }, (_, i) => jsonPayload(i)));
    const after = await encodeRequestCount(server);
    assert.equal(after - before, 1);
  });

  it('makes no HTTP call for an empty list', async () => {
    const before = await encodeRequestCount(server);
    assert.deepEqual(await codec.encode([]), []);
    assert.equal((await encodeRequestCount(server)) - before, 0);
  });

  it('binds sealed payloads to the namespace: another namespace cannot open them', async () => {
    const secret = 'only-for-payments-7731';
    const sealed = await codec.encode([jsonPayload(secret)]);
    const other = new RemotePayloadCodec({ endpoint: server.url, namespace: 'marketing' });
    try {
      const err = await rejection(other.decode(sealed));

      assert.ok(err instanceof CodecBadRequestError, String(err));
      assert.equal(err.status, 400);
      assert.equal(err.code, 'decode-failed');
      assert.equal(err.attempts, 1, 'a 400 is not retried');
      assert.deepEqual(err.indexes, [0]);
      assert.match(err.message, /^remote codec decode \(namespace "marketing"\) failed: request refused \[HTTP 400; code=decode-failed; indexes=0; request_id=[0-9a-f-]{36}\.1\]$/);
      assertNoSecrets(err, [secret]);
    } finally {
      other.close();
    }
  });

  it('reports an invalid namespace as CodecBadRequestError with the server code', async () => {
    const bad = new RemotePayloadCodec({ endpoint: server.url, namespace: '../etc' });
    try {
      const err = await rejection(bad.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecBadRequestError, String(err));
      assert.equal(err.code, 'invalid-namespace');
    } finally {
      bad.close();
    }
  });

  it("refuses payloads whose SDK serialization context names another namespace (they would be unreadable there)", async () => {
    const err = await rejection(codec.encode([jsonPayload('x')], { type: 'workflow', namespace: 'marketing', workflowId: 'w' }));
    assert.ok(err instanceof CodecError, String(err));
    assert.equal(err.code, 'namespace-mismatch');
    const sealed = await codec.encode([jsonPayload('same')], { type: 'workflow', namespace: 'payments', workflowId: 'w' });
    assert.equal(text((await codec.decode(sealed, { type: 'activity', namespace: 'payments', isLocal: false }))[0]?.data), '"same"');
  });

  it('accepts an endpoint with a trailing slash or a {namespace} placeholder', async () => {
    for (const endpoint of [`${server.url}/`, `${server.url}/{namespace}`]) {
      const c = new RemotePayloadCodec({ endpoint, namespace: 'payments' });
      try {
        const sealed = await c.encode([jsonPayload('slash')]);
        assert.equal(text((await codec.decode(sealed))[0]?.data), '"slash"', endpoint);
      } finally {
        c.close();
      }
    }
  });
});

describe('RemotePayloadCodec options', () => {
  const ok = { endpoint: 'http://127.0.0.1:1', namespace: 'ns' };

  it('uses the documented defaults', () => {
    const c = new RemotePayloadCodec(ok);
    assert.equal(c.timeoutMs, 10_000);
    assert.equal(c.maxRetries, 3);
    assert.equal(c.backoffMs, 200);
    assert.equal(c.maxBackoffMs, 10_000);
    assert.equal(c.verifySealed, true);
    c.close();
  });

  for (const [what, options] of [
    ['no endpoint', { ...ok, endpoint: '' }],
    ['a relative endpoint', { ...ok, endpoint: 'codec.example.com' }],
    ['a non-HTTP endpoint', { ...ok, endpoint: 'ftp://codec.example.com' }],
    ['an endpoint with a query', { ...ok, endpoint: 'http://h/?a=1' }],
    ['no namespace', { ...ok, namespace: '' }],
    ['token and tokenFile', { ...ok, token: 't', tokenFile: '/t' }],
    ['an empty token', { ...ok, token: ' ' }],
    ['a token of two lines', { ...ok, token: 'abc\nX-Injected: 1' }],
    ['a header value with a line break', { ...ok, headers: { 'X-Team': 'a\r\nX-Injected: 1' } }],
    ['a negative timeout', { ...ok, timeoutMs: -1 }],
    ['fractional retries', { ...ok, maxRetries: 1.5 }],
    ['maxBackoffMs below backoffMs', { ...ok, backoffMs: 500, maxBackoffMs: 100 }],
    ['caFile on http', { ...ok, caFile: '/etc/ssl/ca.pem' }],
    ['a header replacing X-Namespace', { ...ok, headers: { 'x-namespace': 'other' } }],
    ['an Authorization header with a token', { ...ok, token: 't', headers: { Authorization: 'Bearer u' } }],
  ] as const) {
    it(`refuses ${what}`, () => {
      assert.throws(() => new RemotePayloadCodec(options), CodecConfigurationError);
    });
  }
});

async function encodeRequestCount(server: CodecServer): Promise<number> {
  const res = await fetch(`${server.url}/metrics`);
  const body = await res.text();
  let total = 0;
  for (const line of body.split('\n')) {
    if (line.startsWith('codec_http_requests_total{') && line.includes('operation="encode"')) {
      total += Number(line.split(' ').pop());
    }
  }
  return total;
}
