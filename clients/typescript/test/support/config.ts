/**
 * TOML configs for the real server in JWT mode, with policies naming Kubernetes service accounts.
 */
import { CODEC_AUDIENCE, K8S_ISSUER, type TestIssuer } from './jwt';

/**
 * How policies name a worker. `sub` uses `sub:system:serviceaccount:<ns>:<name>` principals (DESIGN §6),
 * the way a real service-account token (which has no email) must be matched. `email` is the fallback for
 * a server build without `sub:` principals: tokens then also carry an email claim. One line to switch.
 */
export const PRINCIPAL_STYLE: 'sub' | 'email' = 'sub';

/** The worker service account allowed to encode and decode in the codec namespaces. */
export const WORKER = { k8sNamespace: 'payments', name: 'payments-worker' } as const;
/** May decode but not encode. */
export const READER = { k8sNamespace: 'payments', name: 'payments-reader' } as const;
/** A service account of another team: no access at all. */
export const OUTSIDER = { k8sNamespace: 'marketing', name: 'marketing-worker' } as const;

export interface ServiceAccount {
  k8sNamespace: string;
  name: string;
}

export function principal(sa: ServiceAccount): string {
  return PRINCIPAL_STYLE === 'sub'
    ? `sub:system:serviceaccount:${sa.k8sNamespace}:${sa.name}`
    : `${sa.name}@${sa.k8sNamespace}.serviceaccount.test`;
}

/** A worker token: exactly a Kubernetes service-account token (plus an email only in `email` style). */
export function workerToken(issuer: TestIssuer, sa: ServiceAccount, lifetimeS = 3600): string {
  if (PRINCIPAL_STYLE === 'sub') return issuer.serviceAccountToken(sa.k8sNamespace, sa.name, { lifetimeS });
  const now = Math.floor(Date.now() / 1000);
  return issuer.sign({
    aud: [CODEC_AUDIENCE],
    exp: now + lifetimeS,
    iat: now,
    iss: K8S_ISSUER,
    nbf: now,
    sub: `system:serviceaccount:${sa.k8sNamespace}:${sa.name}`,
    email: principal(sa),
    'kubernetes.io': { namespace: sa.k8sNamespace, serviceaccount: { name: sa.name, uid: 'uid' } },
  });
}

/** Namespaces whose policy lets WORKER encode+decode and READER decode; anything else is refused. */
export const CODEC_NAMESPACES = ['payments', 'default'];

export function tomlString(s: string): string {
  return JSON.stringify(s);
}

export function jwtConfig(opts: { dir: string; jwksUrl: string; tls?: { cert: string; key: string } }): string {
  const policies = CODEC_NAMESPACES.map(
    (ns) => `
[[auth.policies]]
match = ${tomlString(ns)}
decode = [${tomlString(principal(WORKER))}, ${tomlString(principal(READER))}]
encode = [${tomlString(principal(WORKER))}]
on_deny = "reject"
`,
  ).join('');
  return `
data_dir = ${tomlString(opts.dir)}

[server]
shutdown_timeout = "1s"
${tlsSection(opts.tls)}
[auth]
mode = "jwt"

[[auth.issuers]]
issuer = ${tomlString(K8S_ISSUER)}
audiences = [${tomlString(CODEC_AUDIENCE)}]
jwks_url = ${tomlString(opts.jwksUrl)}
algorithms = ["RS256"]
${policies}
[[auth.policies]]
match = "shared"
decode = [${tomlString(principal(WORKER))}]
encode = [${tomlString(principal(WORKER))}]
on_deny = "passthrough"

[[auth.policies]]
match = "*"
decode = []
encode = []
on_deny = "reject"

[keyrings.main]
primary = ["local://main"]

[[namespaces]]
match = "*"
keyring = "main"

[log]
level = "info"
`;
}

/** Auth off (loopback only), local key, optional TLS. */
export function devConfig(opts: { dir: string; tls?: { cert: string; key: string } }): string {
  return `
data_dir = ${tomlString(opts.dir)}

[server]
shutdown_timeout = "1s"
${tlsSection(opts.tls)}
[auth]
mode = "disabled"

[keyrings.main]
primary = ["local://main"]

[[namespaces]]
match = "*"
keyring = "main"

[log]
level = "warn"
`;
}

function tlsSection(tls: { cert: string; key: string } | undefined): string {
  if (!tls) return '';
  return `
[server.tls]
cert_file = ${tomlString(tls.cert)}
key_file = ${tomlString(tls.key)}
`;
}
