/**
 * caFile against the real server speaking HTTPS (`[server.tls]`) with a certificate from a private CA
 * generated here with the openssl CLI.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CodecConfigurationError, CodecError, CodecUnauthorizedError, CodecUnavailableError, RemotePayloadCodec } from '../src';
import { jwtConfig, WORKER, workerToken } from './support/config';
import { TestIssuer } from './support/jwt';
import { encodingOf, jsonPayload, rejection, text } from './support/payloads';
import { CodecServer, keygen, tempDir } from './support/server';

interface Pki {
  dir: string;
  caFile: string;
  otherCaFile: string;
  cert: string;
  key: string;
}

/** A private CA, a server certificate for 127.0.0.1 signed by it, and an unrelated second CA. */
function makePki(): Pki {
  const dir = tempDir('pki');
  const f = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => {
    try {
      execFileSync('openssl', args, { stdio: 'pipe' });
    } catch (err) {
      throw new Error(`openssl ${args[0]} failed (is the openssl CLI installed? apt-get install openssl): ${String(err)}`);
    }
  };
  for (const ca of ['ca', 'other-ca']) {
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
      '-subj', `/CN=Test ${ca}`, '-keyout', f(`${ca}.key`), '-out', f(`${ca}.pem`),
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  }
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f('server.key'));
  openssl('req', '-new', '-key', f('server.key'), '-subj', '/CN=codec.test', '-out', f('server.csr'));
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('ext.cnf'), '-out', f('server.pem'));
  return { dir, caFile: f('ca.pem'), otherCaFile: f('other-ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

describe('caFile against the real server over TLS (JWT mode)', () => {
  const issuer = new TestIssuer();
  let pki: Pki;
  let server: CodecServer;

  before(async () => {
    pki = makePki();
    await issuer.start();
    server = await CodecServer.start({
      ca: readFileSync(pki.caFile),
      config: ({ dir }) => {
        keygen(`${dir}/keys`);
        return jwtConfig({ dir, jwksUrl: issuer.jwksUrl, tls: { cert: pki.cert, key: pki.key } });
      },
    });
  });

  after(async () => {
    await server?.stop();
    await issuer.stop();
    if (pki) rmSync(pki.dir, { recursive: true, force: true });
  });

  it('round-trips over HTTPS when caFile names the private CA', async () => {
    const codec = new RemotePayloadCodec({
      endpoint: server.url,
      namespace: 'payments',
      caFile: pki.caFile,
      token: workerToken(issuer, WORKER),
    });
    try {
      assert.match(server.url, /^https:/);
      const sealed = await codec.encode([jsonPayload('over tls')]);
      assert.equal(encodingOf(sealed[0]!), 'binary/kms-envelope');
      assert.equal(text((await codec.decode(sealed))[0]?.data), '"over tls"');
    } finally {
      codec.close();
    }
  });

  it('still enforces auth over TLS (401 without a token)', async () => {
    const codec = new RemotePayloadCodec({ endpoint: server.url, namespace: 'payments', caFile: pki.caFile });
    try {
      const err = await rejection(codec.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecUnauthorizedError, String(err));
    } finally {
      codec.close();
    }
  });

  it('refuses the server when caFile names another CA, at once (no retries), the token absent from the error', async () => {
    const token = workerToken(issuer, WORKER);
    const codec = new RemotePayloadCodec({ endpoint: server.url, namespace: 'payments', caFile: pki.otherCaFile, token });
    try {
      const err = await rejection(codec.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecError && !(err instanceof CodecUnavailableError), String(err));
      assert.equal(err.attempts, 1, 'a certificate failure is not retried');
      assert.match(err.message, /TLS certificate verification failed \(see caFile\)/);
      assert.ok(!err.message.includes(token));
    } finally {
      codec.close();
    }
  });

  it("refuses the server without caFile (Node's default roots do not know the private CA)", async () => {
    const codec = new RemotePayloadCodec({ endpoint: server.url, namespace: 'payments' });
    try {
      const err = await rejection(codec.encode([jsonPayload('x')]));
      assert.ok(err instanceof CodecError && !(err instanceof CodecUnavailableError), String(err));
      assert.match(err.code ?? '', /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
    } finally {
      codec.close();
    }
  });

  it('throws CodecConfigurationError for an unreadable caFile', () => {
    assert.throws(
      () => new RemotePayloadCodec({ endpoint: server.url, namespace: 'payments', caFile: path.join(pki.dir, 'missing.pem') }),
      CodecConfigurationError,
    );
  });
});
