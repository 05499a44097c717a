/**
 * An OIDC-style issuer for tests: an RSA key pair from node:crypto, RS256 tokens, and the JWKS served
 * from a node:http server on loopback (the codec server fetches it like a cluster's JWKS endpoint).
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import * as http from 'node:http';

/** The issuer and audience our worker tokens carry, like a cluster's service-account issuer. */
export const K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';
export const CODEC_AUDIENCE = 'temporal-codec';

export class TestIssuer {
  readonly kid = `test-${randomUUID()}`;
  private readonly privateKey: KeyObject;
  private readonly publicJwk: Record<string, unknown>;
  private server: http.Server | undefined;
  port = 0;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    this.privateKey = privateKey;
    this.publicJwk = { ...publicKey.export({ format: 'jwk' }), kid: this.kid, alg: 'RS256', use: 'sig' };
  }

  get jwksUrl(): string {
    return `http://127.0.0.1:${this.port}/openid/v1/jwks`;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      if (req.method === 'GET' && req.url === '/openid/v1/jwks') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys: [this.publicJwk] }));
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** RS256-sign arbitrary claims with this issuer's key. */
  sign(claims: Record<string, unknown>, key: KeyObject = this.privateKey): string {
    const header = { alg: 'RS256', typ: 'JWT', kid: this.kid };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign('sha256', Buffer.from(input), key);
    return `${input}.${signature.toString('base64url')}`;
  }

  /**
   * A token shaped exactly like a Kubernetes projected service-account token (no email):
   * iss, sub = system:serviceaccount:<ns>:<name>, aud, exp, iat, nbf, and the kubernetes.io claim.
   */
  serviceAccountToken(k8sNamespace: string, name: string, opts: { lifetimeS?: number; aud?: string } = {}): string {
    const now = Math.floor(Date.now() / 1000);
    return this.sign({
      aud: [opts.aud ?? CODEC_AUDIENCE],
      exp: now + (opts.lifetimeS ?? 3600),
      iat: now,
      iss: K8S_ISSUER,
      nbf: now,
      sub: `system:serviceaccount:${k8sNamespace}:${name}`,
      'kubernetes.io': {
        namespace: k8sNamespace,
        pod: { name: `${name}-7d9f8b6c5-x2x4q`, uid: randomUUID() },
        serviceaccount: { name, uid: randomUUID() },
      },
    });
  }
}

/** A key the issuer never published: tokens signed with it must be refused (401). */
export function foreignKey(): KeyObject {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' }));
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
