/**
 * The real codec-server binary, started per test file on a free loopback port with its own data dir.
 *
 * The binary comes from `CODEC_SERVER_BIN` (scripts/test-typescript-client.sh sets it; CI builds it with
 * `cargo build`). A missing binary fails the test with a message saying how to get it — never a skip.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

export function serverBinary(): string {
  const bin = process.env['CODEC_SERVER_BIN'];
  if (bin === undefined || bin === '') {
    throw new Error(
      'CODEC_SERVER_BIN is not set: build the server with `cargo build` and run these tests through ' +
        'scripts/test-typescript-client.sh (it points CODEC_SERVER_BIN at target/debug/codec-server).',
    );
  }
  if (!existsSync(bin)) {
    throw new Error(`CODEC_SERVER_BIN=${bin} does not exist: build it with \`cargo build\` in the repository root.`);
  }
  return bin;
}

/** A port that was free a moment ago (the OS picks it; a clash is retried by `startCodecServer`). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), `tcc-${prefix}-`));
}

export interface CodecServerOptions {
  /** TOML config (its `data_dir` should be `dir`); without it the server runs the dev default (auth off). */
  config?: (ctx: { dir: string; port: number }) => string;
  /** Use this port instead of a free one (for the "server comes up later" test). */
  port?: number;
  /** Serve HTTPS: the readiness probe then trusts this CA. */
  ca?: Buffer;
}

export class CodecServer {
  private output = '';
  private constructor(
    readonly child: ChildProcess,
    readonly port: number,
    readonly dir: string,
    readonly scheme: 'http' | 'https',
  ) {
    child.stdout?.on('data', (d: Buffer) => this.capture(d));
    child.stderr?.on('data', (d: Buffer) => this.capture(d));
  }

  get url(): string {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  /** The server's log so far (for assertion messages and for the "no token in logs" check). */
  get log(): string {
    return this.output;
  }

  private capture(d: Buffer): void {
    if (this.output.length < 2_000_000) this.output += d.toString('utf8');
  }

  static async start(options: CodecServerOptions = {}): Promise<CodecServer> {
    const bin = serverBinary();
    const dir = tempDir('server');
    let lastError: unknown;
    for (let tries = 0; tries < 3; tries++) {
      const port = options.port ?? (await freePort());
      const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dir];
      if (options.config) {
        const file = path.join(dir, 'config.toml');
        writeFileSync(file, options.config({ dir, port }));
        args.push('--config', file);
      }
      // The config's [log] level decides what is logged; an inherited RUST_LOG would override it.
      const env = { ...process.env };
      delete env['RUST_LOG'];
      const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      const server = new CodecServer(child, port, dir, options.ca ? 'https' : 'http');
      try {
        await server.waitReady(options.ca);
        return server;
      } catch (err) {
        lastError = err;
        await server.stop(false);
        if (options.port !== undefined) break;
      }
    }
    rmSync(dir, { recursive: true, force: true });
    throw lastError;
  }

  private async waitReady(ca: Buffer | undefined): Promise<void> {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`codec-server exited (${this.child.exitCode ?? this.child.signalCode}) during startup:\n${this.output}`);
      }
      if (await probe(`${this.url}/healthz`, ca)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`codec-server did not answer /healthz on ${this.url} within 20 s:\n${this.output}`);
  }

  /** `codec-server audit query --format json` over this server's audit database, newest first. */
  auditRows(): Record<string, unknown>[] {
    const out = execFileSync(
      serverBinary(),
      ['audit', 'query', '--config', path.join(this.dir, 'config.toml'), '--format', 'json', '--limit', '1000'],
      { encoding: 'utf8', stdio: 'pipe' },
    );
    return out
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  async stop(removeDir = true): Promise<void> {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    if (removeDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

function probe(url: string, ca: Buffer | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const client = url.startsWith('https:') ? https : http;
    const req = client.get(url, ca ? { ca, agent: false } : { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.setTimeout(1000, () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** `codec-server keygen --name NAME --dir DIR`: a local KEK for a config-file server. */
export function keygen(dir: string, name = 'main'): void {
  execFileSync(serverBinary(), ['keygen', '--name', name, '--dir', dir], { stdio: 'pipe' });
}
