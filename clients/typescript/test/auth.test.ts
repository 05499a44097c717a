/**
 * RemotePayloadCodec against the real server in JWT mode, with Kubernetes service-account tokens
 * (RS256, JWKS served on loopback) and per-namespace policies naming service accounts.
 */
import * as assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  CodecForbiddenError,
  CodecResponseError,
  CodecTokenError,
  CodecUnauthorizedError,
  RemotePayloadCodec,
  type RemotePayloadCodecOptions,
} from '../src';
import { jwtConfig, OUTSIDER, READER, WORKER, workerToken } from './support/config';
import { foreignKey, TestIssuer } from './support/jwt';
import { assertNoSecrets, encodingOf, jsonPayload, rejection, text } from './support/payloads';
import { CodecServer, keygen, tempDir } from './support/server';

describe('RemotePayloadCodec with JWT auth (Kubernetes service-account tokens)', () => {
  const issuer = new TestIssuer();
  let server: CodecServer;
  const codecs: RemotePayloadCodec[] = [];

  const codec = (options: Omit<RemotePayloadCodecOptions, 'endpoint' | 'namespace'>, namespace = 'payments') => {
    const c = new RemotePayloadCodec({ endpoint: server.url, namespace, ...options });
    codecs.push(c);
    return c;
  };

  before(async () => {
    await issuer.start();
    server = await CodecServer.start({
      config: ({ dir }) => {
        keygen(`${dir}/keys`);
        return jwtConfig({ dir, jwksUrl: issuer.jwksUrl });
      },
    });
  });

  after(async () => {
    for (const c of codecs) c.close();
    await server?.stop();
    await issuer.stop();
  });

  it('round-trips with the worker service account token', async () => {
    const c = codec({ token: workerToken(issuer, WORKER) });
    const sealed = await c.encode([jsonPayload({ amount: 42 })]);
    assert.equal(encodingOf(sealed[0]!), 'binary/kms-envelope');
    assert.equal(text((await c.decode(sealed))[0]?.data), '{"amount":42}');
  });

  it('throws CodecUnauthorizedError without a token', async () => {
    const err = await rejection(codec({}).encode([jsonPayload('x')]));
    assert.ok(err instanceof CodecUnauthorizedError, String(err));
    assert.equal(err.status, 401);
    assert.equal(err.code, 'unauthenticated');
    assert.equal(err.attempts, 1, 'a 401 is not retried');
  });

  it('throws CodecUnauthorizedError for a token signed by an unknown key, without the token in the message', async () => {
    const forged = issuer.sign(
      { iss: 'https://kubernetes.default.svc.cluster.local', sub: 'system:serviceaccount:payments:payments-worker', aud: ['temporal-codec'], exp: Math.floor(Date.now() / 1000) + 600 },
      foreignKey(),
    );
    const secret = 'iban DE89 3704 0044 0532 0130 00';
    const err = await rejection(codec({ token: forged }).encode([jsonPayload(secret)]));
    assert.ok(err instanceof CodecUnauthorizedError, String(err));
    assert.match(err.message, /\[HTTP 401; code=unauthenticated; request_id=[0-9a-f-]{36}\.1\]/);
    assertNoSecrets(err, [forged, forged.split('.')[2]!, secret]);
  });

  it('throws CodecUnauthorizedError for an expired token', async () => {
    const expired = workerToken(issuer, WORKER, -3600);
    const err = await rejection(codec({ token: expired }).encode([jsonPayload('x')]));
    assert.ok(err instanceof CodecUnauthorizedError, String(err));
  });

  it("throws CodecForbiddenError for another team's service account", async () => {
    const token = workerToken(issuer, OUTSIDER);
    const secret = 'salary 123456';
    const err = await rejection(codec({ token }).encode([jsonPayload(secret)]));
    assert.ok(err instanceof CodecForbiddenError, String(err));
    assert.equal(err.status, 403);
    assert.equal(err.code, 'forbidden');
    assert.match(err.message, /^remote codec encode \(namespace "payments"\) failed: not allowed by the namespace's policy \[HTTP 403; code=forbidden; request_id=/);
    assertNoSecrets(err, [token, secret]);
  });

  it("gives the request id of the server's audit row, which names the refused service account", async () => {
    const err = await rejection(codec({ token: workerToken(issuer, OUTSIDER) }).decode([jsonPayload('x')]));
    assert.ok(err instanceof CodecForbiddenError, String(err));
    assert.ok(err.requestId);
    let row: Record<string, unknown> | undefined;
    for (let i = 0; i < 40 && !row; i++) {
      row = server.auditRows().find((r) => r['request_id'] === err.requestId);
      if (!row) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(row, `no audit row with request id ${err.requestId}`);
    assert.equal(row['subject'], 'system:serviceaccount:marketing:marketing-worker');
    assert.equal(row['outcome'], 'denied');
    assert.match(String(row['user_agent']), /^temporal-codec-client-typescript\//);
  });

  it('lets a decode-only service account decode but throws CodecForbiddenError on encode (no plaintext back)', async () => {
    const sealed = await codec({ token: workerToken(issuer, WORKER) }).encode([jsonPayload('shared')]);
    const reader = codec({ token: workerToken(issuer, READER) });

    assert.equal(text((await reader.decode(sealed))[0]?.data), '"shared"');
    const err = await rejection(reader.encode([jsonPayload('must not come back')]));
    assert.ok(err instanceof CodecForbiddenError, String(err));
  });

  it('refuses a decode reply that is still sealed (a passthrough denial) unless verifySealed is off', async () => {
    const sealed = await codec({ token: workerToken(issuer, WORKER) }, 'shared').encode([jsonPayload('secret')]);
    const outsider = codec({ token: workerToken(issuer, OUTSIDER) }, 'shared');
    const err = await rejection(outsider.decode(sealed));
    assert.ok(err instanceof CodecResponseError, String(err));
    assert.deepEqual(err.indexes, [0]);
    const lenient = codec({ token: workerToken(issuer, OUTSIDER), verifySealed: false }, 'shared');
    assert.equal(encodingOf((await lenient.decode(sealed))[0]!), 'binary/kms-envelope', 'passed through, still sealed');
  });

  it('refuses the worker token in a namespace its policy does not cover', async () => {
    const err = await rejection(codec({ token: workerToken(issuer, WORKER) }, 'marketing').encode([jsonPayload('x')]));
    assert.ok(err instanceof CodecForbiddenError, String(err));
  });

  it('calls an async token function before every request', async () => {
    let calls = 0;
    const c = codec({
      token: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 5));
        return workerToken(issuer, WORKER);
      },
    });
    const sealed = await c.encode([jsonPayload('fn')]);
    await c.decode(sealed);
    assert.equal(calls, 2);
  });

  it('throws CodecTokenError when the token function fails, without repeating its error text', async () => {
    const c = codec({
      token: () => {
        throw new Error('vault said: token hvs.SECRET-abc');
      },
    });
    const err = await rejection(c.encode([jsonPayload('x')]));
    assert.ok(err instanceof CodecTokenError, String(err));
    assertNoSecrets(err, ['hvs.SECRET-abc']);
  });

  it('re-reads tokenFile when Kubernetes swaps the ..data symlink (projected token rotation)', async () => {
    // The kubelet's layout: <dir>/token -> ..data/token, ..data -> ..<timestamp>/ (swapped atomically).
    const dir = tempDir('sa-token');
    try {
      const writeVersion = (name: string, token: string) => {
        mkdirSync(path.join(dir, name));
        writeFileSync(path.join(dir, name, 'token'), token);
        symlinkSync(name, path.join(dir, '..data_tmp'));
        renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
      };
      writeVersion('..2026_11_29_20_00_00.1', workerToken(issuer, OUTSIDER));
      symlinkSync('..data/token', path.join(dir, 'token'));
      const c = codec({ tokenFile: path.join(dir, 'token') });

      const refused = await rejection(c.encode([jsonPayload('x')]));
      assert.ok(refused instanceof CodecForbiddenError, String(refused));

      writeVersion('..2026_11_29_21_00_00.2', workerToken(issuer, WORKER));
      rmSync(path.join(dir, '..2026_11_29_20_00_00.1'), { recursive: true });

      const sealed = await c.encode([jsonPayload('rotated')]);
      assert.equal(text((await c.decode(sealed))[0]?.data), '"rotated"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('re-reads tokenFile when it is rewritten in place', async () => {
    const dir = tempDir('token-file');
    const file = path.join(dir, 'token');
    try {
      writeFileSync(file, `${workerToken(issuer, WORKER)}\n`);
      const c = codec({ tokenFile: file });
      await c.encode([jsonPayload('first')]);

      writeFileSync(file, workerToken(issuer, OUTSIDER));
      const err = await rejection(c.encode([jsonPayload('second')]));
      assert.ok(err instanceof CodecForbiddenError, 'the new (refused) token must be used at once');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads tokenFile again after a 401 when a rewrite left inode, size and mtime unchanged', async () => {
    const dir = tempDir('token-same-stamp');
    const file = path.join(dir, 'token');
    const stamp = new Date('2026-11-29T20:00:00Z');
    try {
      const expired = workerToken(issuer, WORKER, -3600);
      const valid = workerToken(issuer, WORKER);
      assert.equal(expired.length, valid.length, 'the two tokens must have the same size for this test');
      writeFileSync(file, expired);
      utimesSync(file, stamp, stamp);
      const c = codec({ tokenFile: file });
      assert.ok((await rejection(c.encode([jsonPayload('x')]))) instanceof CodecUnauthorizedError);

      const before = statSync(file);
      writeFileSync(file, valid); // in place: same inode, same size
      utimesSync(file, stamp, stamp);
      const after = statSync(file);
      assert.deepEqual([after.ino, after.size, after.mtimeMs], [before.ino, before.size, before.mtimeMs]);

      const sealed = await c.encode([jsonPayload('after 401')]);
      assert.equal(text((await c.decode(sealed))[0]?.data), '"after 401"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('throws CodecTokenError for a missing, empty or multi-line tokenFile', async () => {
    const dir = tempDir('token-missing');
    try {
      const missing = await rejection(codec({ tokenFile: path.join(dir, 'nope') }).encode([jsonPayload('x')]));
      assert.ok(missing instanceof CodecTokenError, String(missing));
      assert.match(missing.message, /ENOENT/);
      writeFileSync(path.join(dir, 'empty'), '\n');
      const empty = await rejection(codec({ tokenFile: path.join(dir, 'empty') }).encode([jsonPayload('x')]));
      assert.ok(empty instanceof CodecTokenError, String(empty));
      const twoTokens = `${workerToken(issuer, WORKER)}\n${workerToken(issuer, READER)}\n`;
      writeFileSync(path.join(dir, 'two-lines'), twoTokens);
      const twoLines = await rejection(codec({ tokenFile: path.join(dir, 'two-lines') }).encode([jsonPayload('x')]));
      assert.ok(twoLines instanceof CodecTokenError, String(twoLines));
      assertNoSecrets(twoLines, twoTokens.trim().split('\n'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never leaves a token in the server log', () => {
    assert.match(server.log, /Request served/, 'the server logged no access line at all');
    assert.ok(!/eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\./.test(server.log), 'a JWT appears in the server log');
  });
});
