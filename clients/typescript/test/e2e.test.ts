/**
 * End to end: a real Temporal dev server, a real TypeScript worker and client (SDK 1.24) with
 * RemotePayloadCodec in their data converters, and the real codec server in JWT mode.
 *
 * Checked: the workflow runs (input → activity → result) and decodes for the client; the stored history,
 * read without the codec, holds only `binary/kms-envelope` payloads and not one plaintext byte; a worker
 * whose token is refused fails its tasks and writes nothing readable.
 */
import * as assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

import { RemotePayloadCodec } from '../src';
import { jwtConfig, OUTSIDER, READER, type ServiceAccount, WORKER, workerToken } from './support/config';
import * as activities from './e2e/activities';
import type { Order } from './e2e/workflows';
import { TestIssuer } from './support/jwt';
import { CodecServer, keygen } from './support/server';
import { TemporalDevServer } from './support/temporal';

const NAMESPACE = 'default';
const CARD = '4111-1111-1111-SECRET';

// Workers log a codec failure (WARN in core) on purpose in the refused-worker cases; keep the output short.
Runtime.install({
  logger: new DefaultLogger('WARN', () => undefined),
  telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
});

describe('end to end: Temporal dev server + TypeScript worker + codec server', () => {
  const issuer = new TestIssuer();
  let codecServer: CodecServer;
  let temporalServer: TemporalDevServer;
  let connection: Connection;
  let bundle: WorkflowBundleWithSourceMap;
  const codecs: RemotePayloadCodec[] = [];

  const codecFor = (sa: ServiceAccount) => {
    const codec = new RemotePayloadCodec({ endpoint: codecServer.url, namespace: NAMESPACE, token: workerToken(issuer, sa) });
    codecs.push(codec);
    return codec;
  };
  const clientWith = (codec: RemotePayloadCodec | undefined) =>
    new Client({ connection, namespace: NAMESPACE, dataConverter: codec ? { payloadCodecs: [codec] } : {} });

  async function runWorker<T>(sa: ServiceAccount, taskQueue: string, body: () => Promise<T>): Promise<T> {
    const nativeConnection = await NativeConnection.connect({ address: temporalServer.address });
    try {
      const worker = await Worker.create({
        connection: nativeConnection,
        namespace: NAMESPACE,
        taskQueue,
        workflowBundle: bundle,
        activities,
        dataConverter: { payloadCodecs: [codecFor(sa)] },
      });
      return await worker.runUntil(body);
    } finally {
      await nativeConnection.close();
    }
  }

  before(async () => {
    await issuer.start();
    // Start both servers and bundle the workflow code concurrently; whatever started is stopped in after().
    const [codec, temporal, bundled] = await Promise.allSettled([
      CodecServer.start({
        config: ({ dir }) => {
          keygen(`${dir}/keys`);
          return jwtConfig({ dir, jwksUrl: issuer.jwksUrl });
        },
      }),
      TemporalDevServer.start(),
      bundleWorkflowCode({ workflowsPath: require.resolve('./e2e/workflows'), logger: new DefaultLogger('WARN', () => undefined) }),
    ]);
    if (codec.status === 'fulfilled') codecServer = codec.value;
    if (temporal.status === 'fulfilled') temporalServer = temporal.value;
    for (const r of [codec, temporal, bundled]) if (r.status === 'rejected') throw r.reason;
    bundle = (bundled as PromiseFulfilledResult<WorkflowBundleWithSourceMap>).value;
    connection = await Connection.connect({ address: temporalServer.address });
  });

  after(async () => {
    for (const c of codecs) c.close();
    await connection?.close();
    await temporalServer?.stop();
    await codecServer?.stop();
    await issuer.stop();
  });

  it('runs a workflow through the codec and stores only sealed payloads', async () => {
    const client = clientWith(codecFor(WORKER));
    const order: Order = { card: CARD, amountCents: 1234 };

    const result = await runWorker(WORKER, 'pay-ok', () =>
      client.workflow.execute('payOrder', { taskQueue: 'pay-ok', workflowId: 'pay-ok-1', args: [order] }),
    );

    assert.equal(result, `receipt for ${CARD} charged 1234`);
    const history = await clientWith(undefined).workflow.getHandle('pay-ok-1').fetchHistory();
    const payloads = payloadsIn(history);
    // Workflow input, activity input, activity result, workflow result at least.
    assert.ok(payloads.length >= 4, `expected at least 4 payloads in history, found ${payloads.length}`);
    for (const p of payloads) assert.equal(encoding(p), 'binary/kms-envelope');
    assertNoPlaintext(history, [CARD, 'json/plain']);
  });

  for (const [what, sa] of [
    ["another team's service account (decode and encode refused)", OUTSIDER],
    ['a decode-only service account (encode refused)', READER],
  ] as const) {
    it(`a worker with ${what} fails its workflow task and writes no plaintext`, async () => {
      const client = clientWith(codecFor(WORKER));
      const taskQueue = `refused-${sa.name}`;
      const handle = await client.workflow.start('payOrder', {
        taskQueue,
        workflowId: taskQueue,
        args: [{ card: CARD, amountCents: 1 }],
      });

      const failures = await runWorker(sa, taskQueue, async () => {
        // The first workflow task fails at once; Temporal then retries it. Wait for the failure in history.
        for (let i = 0; i < 50; i++) {
          const events = (await handle.fetchHistory()).events ?? [];
          const failed = events.filter((e) => e.workflowTaskFailedEventAttributes);
          if (failed.length > 0) return failed;
          await new Promise((r) => setTimeout(r, 200));
        }
        return [];
      });

      const history = await handle.fetchHistory();
      const events = history.events ?? [];
      assert.ok(failures.length > 0, 'expected a WorkflowTaskFailed event in history');
      const message = failures[0]?.workflowTaskFailedEventAttributes?.failure?.message ?? '';
      assert.match(message, /codec (decode|encode)/, `workflow task failure: ${message}`);
      assert.ok(!message.includes(CARD));
      assert.ok(!events.some((e) => e.activityTaskScheduledEventAttributes), 'no activity may be scheduled');
      assert.ok(!events.some((e) => e.workflowExecutionCompletedEventAttributes), 'the workflow must not complete');
      for (const p of payloadsIn(history)) assert.equal(encoding(p), 'binary/kms-envelope');
      assertNoPlaintext(history, [CARD, 'json/plain']);
      await handle.terminate('test over');
    });
  }
});

/** Every Payload object anywhere in the history (found by shape: metadata map + data bytes). */
function payloadsIn(history: temporal.api.history.v1.IHistory): Payload[] {
  const found: Payload[] = [];
  const walk = (value: unknown, depth: number): void => {
    if (depth > 40 || value === null || typeof value !== 'object' || value instanceof Uint8Array) return;
    const obj = value as Record<string, unknown>;
    if (obj['data'] instanceof Uint8Array && typeof obj['metadata'] === 'object' && obj['metadata'] !== null) {
      found.push(obj as Payload);
      return;
    }
    for (const child of Object.values(obj)) walk(child, depth + 1);
  };
  walk(history, 0);
  return found;
}

function encoding(p: Payload): string {
  return new TextDecoder().decode(p.metadata?.['encoding'] ?? new Uint8Array(0));
}

/** Not one of these strings may appear in the serialized history (the bytes Temporal stores). */
function assertNoPlaintext(history: temporal.api.history.v1.IHistory, secrets: string[]): void {
  const raw = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  for (const s of secrets) assert.equal(raw.indexOf(s), -1, `history contains ${JSON.stringify(s)}`);
}
