/**
 * FAKE: a tiny node:http front that stands before the real codec server to force failure sequences
 * the real server cannot be made to produce on demand (503 + Retry-After, a reply with the wrong
 * payload count, a reply that never comes, an encode routed to /decode as a misconfigured proxy would). Every request it does not sabotage is forwarded unchanged
 * to the real server, so successes in these tests are real seals and opens.
 */
import * as http from 'node:http';

export type Sabotage =
  | { kind: 'status'; status: number; retryAfter?: string; code?: string }
  | { kind: 'drop-one-payload' }
  | { kind: 'route-to-decode' }
  | { kind: 'hang' };

export class FakeFront {
  /** What to do with the next requests, in order; when empty, requests are forwarded. */
  plan: Sabotage[] = [];
  /** Arrival times (ms) of every request, and the headers each carried. */
  readonly arrivals: { at: number; headers: http.IncomingHttpHeaders }[] = [];
  private server: http.Server | undefined;
  private readonly sockets = new Set<import('node:net').Socket>();
  /** TCP connections accepted so far (to observe the client's keep-alive pool). */
  connections = 0;
  port = 0;

  constructor(private readonly upstream: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.connections++;
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.arrivals.push({ at: Date.now(), headers: req.headers });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const step = this.plan.shift();
      if (step?.kind === 'hang') return; // never answer
      if (step?.kind === 'status') {
        const headers: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': 'fake-front-1' };
        if (step.retryAfter !== undefined) headers['retry-after'] = step.retryAfter;
        res.writeHead(step.status, headers);
        res.end(JSON.stringify({ error: { code: step.code ?? 'kms-unavailable', message: 'the KMS is unavailable' } }));
        return;
      }
      const url = step?.kind === 'route-to-decode' ? (req.url ?? '/').replace(/encode$/, 'decode') : (req.url ?? '/');
      this.forward(req, url, body, res, step?.kind === 'drop-one-payload');
    });
  }

  private forward(req: http.IncomingMessage, url: string, body: Buffer, res: http.ServerResponse, dropOne: boolean): void {
    const headers = { ...req.headers };
    delete headers['host'];
    const up = http.request(`${this.upstream}${url}`, { method: req.method ?? 'POST', headers }, (upRes) => {
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => chunks.push(c));
      upRes.on('end', () => {
        let out = Buffer.concat(chunks);
        if (dropOne) {
          const json = JSON.parse(out.toString('utf8')) as { payloads: unknown[] };
          json.payloads.pop();
          out = Buffer.from(JSON.stringify(json));
        }
        const h = { ...upRes.headers };
        delete h['content-length'];
        delete h['transfer-encoding'];
        res.writeHead(upRes.statusCode ?? 502, { ...h, 'content-length': String(out.length) });
        res.end(out);
      });
    });
    up.on('error', () => res.writeHead(502).end());
    up.end(body);
  }
}
