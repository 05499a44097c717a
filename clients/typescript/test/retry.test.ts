/**
 * Retries, backoff, Retry-After, connection failures and reply checks.
 *
 * 503 sequences, a short reply and a hanging reply are forced by the FakeFront (a clearly named fake in
 * front of the real server); everything else talks to the real codec-server.
 */
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { CodecResponseError, CodecUnavailableError, RemotePayloadCodec } from '../src';
import { devConfig } from './support/config';
import { FakeFront } from './support/fake-front';
import { assertNoSecrets, encodingOf, jsonPayload, rejection, text } from './support/payloads';
import { CodecServer, freePort, keygen } from './support/server';

const devServer = (port?: number) =>
  CodecServer.start({
    ...(port === undefined ? {} : { port }),
    config: ({ dir }) => {
      keygen(`${dir}/keys`);
      return devConfig({ dir });
    },
  });

describe('retries in front of the real server', () => {
  let server: CodecServer;
  let front: FakeFront;

  before(async () => {
    server = await devServer();
    front = new FakeFront(server.url);
    await front.start();
  });

  after(async () => {
    await front?.stop();
    await server?.stop();
  });

  it('retries 503 and honours Retry-After, then succeeds against the real server', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments' });
    front.plan = [
      { kind: 'status', status: 503, retryAfter: '1' },
      { kind: 'status', status: 503, retryAfter: '1' },
    ];
    const firstArrival = front.arrivals.length;
    try {
      const sealed = await codec.encode([jsonPayload('after two 503s')]);

      assert.equal(encodingOf(sealed[0]!), 'binary/kms-envelope');
      const arrivals = front.arrivals.slice(firstArrival).map((a) => a.at);
      assert.equal(arrivals.length, 3);
      assert.ok(arrivals[1]! - arrivals[0]! >= 950, `second attempt came ${arrivals[1]! - arrivals[0]!} ms after the first`);
      assert.ok(arrivals[2]! - arrivals[1]! >= 950, `third attempt came ${arrivals[2]! - arrivals[1]!} ms after the second`);
      assert.equal(text((await codec.decode(sealed))[0]?.data), '"after two 503s"');
    } finally {
      codec.close();
    }
  });

  it('retries 502 and 504 with backoff (no Retry-After)', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments' });
    front.plan = [{ kind: 'status', status: 502 }, { kind: 'status', status: 504 }];
    try {
      const sealed = await codec.encode([jsonPayload('x')]);
      assert.equal(encodingOf(sealed[0]!), 'binary/kms-envelope');
      assert.equal(front.plan.length, 0, 'both sabotaged replies were consumed');
    } finally {
      codec.close();
    }
  });

  it('gives up after maxRetries with CodecUnavailableError carrying the code and request id', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments', maxRetries: 2 });
    front.plan = [1, 2, 3, 4].map(() => ({ kind: 'status', status: 503, retryAfter: '0' }) as const);
    const firstArrival = front.arrivals.length;
    const secret = 'pin 0000';
    try {
      const err = await rejection(codec.encode([jsonPayload(secret)]));

      assert.ok(err instanceof CodecUnavailableError, String(err));
      assert.equal(front.arrivals.length - firstArrival, 3, '1 attempt + 2 retries');
      assert.equal(err.attempts, 3);
      assert.equal(err.status, 503);
      assert.equal(err.code, 'kms-unavailable');
      assert.equal(err.requestId, 'fake-front-1');
      assert.match(err.message, /\[HTTP 503; code=kms-unavailable; request_id=fake-front-1; attempts=3\]$/);
      assertNoSecrets(err, [secret]);
    } finally {
      front.plan = [];
      codec.close();
    }
  });

  it('sends a fresh X-Request-Id and the namespace on every attempt', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments', headers: { 'X-Team': 'pay' } });
    front.plan = [{ kind: 'status', status: 503, retryAfter: '0' }];
    const firstArrival = front.arrivals.length;
    try {
      await codec.encode([jsonPayload('x')]);
      const seen = front.arrivals.slice(firstArrival).map((a) => a.headers);
      assert.equal(seen.length, 2);
      const [first, second] = seen.map((h) => String(h['x-request-id']));
      assert.match(first!, /^[0-9a-f-]{36}\.1$/);
      assert.equal(second, first!.replace(/\.1$/, '.2'));
      assert.match(String(seen[0]!['user-agent']), /^temporal-codec-client-typescript\//);
      for (const h of seen) {
        assert.equal(h['x-namespace'], 'payments');
        assert.equal(h['content-type'], 'application/json');
        assert.equal(h['x-team'], 'pay');
        assert.equal(h['authorization'], undefined, 'no Authorization header without a token');
      }
    } finally {
      codec.close();
    }
  });

  it('reuses one pooled keep-alive connection for sequential calls', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments' });
    const before = front.connections;
    try {
      for (let i = 0; i < 5; i++) await codec.decode(await codec.encode([jsonPayload(i)]));
      assert.equal(front.connections - before, 1, '10 sequential calls should share one connection');
    } finally {
      codec.close();
    }
  });

  it('rejects a reply whose payload count differs from the request', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments' });
    front.plan = [{ kind: 'drop-one-payload' }];
    try {
      const err = await rejection(codec.encode([jsonPayload(1), jsonPayload(2)]));
      assert.ok(err instanceof CodecResponseError, String(err));
      assert.match(err.message, /reply has 1 payloads, the request had 2/);
    } finally {
      codec.close();
    }
  });

  it('refuses an encode reply holding unsealed payloads (a misrouted endpoint), never returning plaintext', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments' });
    front.plan = [{ kind: 'route-to-decode' }];
    try {
      // The real server's /decode passes unsealed payloads through: exactly what a misrouted encode would see.
      const err = await rejection(codec.encode([jsonPayload('x'), jsonPayload('y')]));
      assert.ok(err instanceof CodecResponseError, String(err));
      assert.deepEqual(err.indexes, [0, 1]);
      assert.match(err.message, /not binary\/kms-envelope/);
    } finally {
      codec.close();
    }
  });

  it('times out an attempt that gets no reply, retries, and reports ETIMEDOUT', async () => {
    const codec = new RemotePayloadCodec({ endpoint: front.url, namespace: 'payments', timeoutMs: 300, maxRetries: 1 });
    front.plan = [{ kind: 'hang' }, { kind: 'hang' }];
    const start = Date.now();
    try {
      const err = await rejection(codec.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecUnavailableError, String(err));
      assert.equal(err.code, 'ETIMEDOUT');
      assert.equal(err.attempts, 2);
      assert.ok(Date.now() - start >= 600);
    } finally {
      front.plan = [];
      codec.close();
    }
  });
});

describe('connection failures', () => {
  it('reports a refused connection as CodecUnavailableError after the retries', async () => {
    const port = await freePort();
    const codec = new RemotePayloadCodec({ endpoint: `http://127.0.0.1:${port}`, namespace: 'payments', maxRetries: 1 });
    try {
      const err = await rejection(codec.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecUnavailableError, String(err));
      assert.equal(err.code, 'ECONNREFUSED');
      assert.equal(err.attempts, 2);
      assert.equal(err.status, undefined);
    } finally {
      codec.close();
    }
  });

  it('keeps retrying a refused connection until the server comes up', async () => {
    const port = await freePort();
    const codec = new RemotePayloadCodec({ endpoint: `http://127.0.0.1:${port}`, namespace: 'payments', maxRetries: 8 });
    let server: CodecServer | undefined;
    try {
      const pending = codec.encode([jsonPayload('late server')]);
      const outcome = pending.then(
        (v) => ({ ok: true as const, v }),
        (e: unknown) => ({ ok: false as const, e }),
      );
      await new Promise((r) => setTimeout(r, 300));
      server = await devServer(port);

      const result = await outcome;
      assert.ok(result.ok, `encode failed: ${result.ok ? '' : String(result.e)}`);
      assert.equal(encodingOf(result.v[0]!), 'binary/kms-envelope');
      assert.equal(text((await codec.decode(result.v))[0]?.data), '"late server"');
    } finally {
      codec.close();
      await server?.stop();
    }
  });
});
