/**
 * Latency of RemotePayloadCodec against the real server in dev mode (auth off, local key), on loopback:
 * sequential encode and decode calls of one 1 KiB payload, then of lists of 100 payloads, and
 * concurrent single-payload calls (as a busy worker makes them). Prints a table; asserts nothing.
 *
 *   CODEC_SERVER_BIN=target/debug/codec-server node clients/typescript/dist/bench/latency.js
 */
import { randomBytes } from 'node:crypto';
import type { Payload } from '@temporalio/common';

import { RemotePayloadCodec } from '../src';
import { devConfig } from '../test/support/config';
import { CodecServer, keygen } from '../test/support/server';

const payload = (): Payload => ({ metadata: { encoding: new TextEncoder().encode('binary/plain') }, data: randomBytes(1024) });

async function timed(label: string, calls: number, concurrency: number, fn: () => Promise<unknown>): Promise<void> {
  const samples: number[] = [];
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < calls) {
        const t = process.hrtime.bigint();
        await fn();
        samples.push(Number(process.hrtime.bigint() - t) / 1e6);
      }
    }),
  );
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  samples.sort((a, b) => a - b);
  const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))]!.toFixed(2);
  console.log(`| ${label} | ${calls} | ${concurrency} | ${q(0.5)} | ${q(0.99)} | ${(calls / wall).toFixed(0)} |`);
}

async function main(): Promise<void> {
  const server = await CodecServer.start({
    config: ({ dir }) => {
      keygen(`${dir}/keys`);
      return devConfig({ dir });
    },
  });
  const codec = new RemotePayloadCodec({ endpoint: server.url, namespace: 'bench' });
  try {
    const one = [payload()];
    const hundred = Array.from({ length: 100 }, payload);
    const sealedOne = await codec.encode(one);
    const sealedHundred = await codec.encode(hundred);
    for (let i = 0; i < 50; i++) await codec.decode(await codec.encode(one)); // warm up
    console.log('| call | calls | concurrency | p50 ms | p99 ms | calls/s |\n|---|---|---|---|---|---|');
    await timed('encode 1 × 1 KiB', 500, 1, () => codec.encode(one));
    await timed('decode 1 × 1 KiB', 500, 1, () => codec.decode(sealedOne));
    await timed('encode 100 × 1 KiB', 100, 1, () => codec.encode(hundred));
    await timed('decode 100 × 1 KiB', 100, 1, () => codec.decode(sealedHundred));
    await timed('decode 1 × 1 KiB', 1000, 16, () => codec.decode(sealedOne));
  } finally {
    codec.close();
    await server.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
