/**
 * The package as a consumer sees it: the `exports` map and its types resolve (through Node's and
 * TypeScript's package self-reference), and the compiled code needs nothing at run time beyond Node's
 * own modules (`@temporalio/common` is used for types only).
 */
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import type { PayloadCodec } from '@temporalio/common';
import * as pkg from 'temporal-codec-client';

import * as local from '../src';

describe('package', () => {
  it('resolves "temporal-codec-client" through its exports map to the compiled entry point', () => {
    assert.equal(require.resolve('temporal-codec-client'), path.resolve(__dirname, '../src/index.js'));
    assert.equal(pkg.RemotePayloadCodec, local.RemotePayloadCodec);
    const codec: PayloadCodec = new pkg.RemotePayloadCodec({ endpoint: 'http://127.0.0.1:1', namespace: 'ns' });
    assert.equal(typeof codec.encode, 'function');
    assert.ok(new pkg.CodecForbiddenError('x', { operation: 'encode' }) instanceof pkg.CodecError);
  });

  it('requires only node: modules and its own files at run time', () => {
    const dir = path.resolve(__dirname, '../src');
    const required = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.js'))) {
      for (const m of readFileSync(path.join(dir, file), 'utf8').matchAll(/require\("([^"]+)"\)/g)) required.add(m[1]!);
    }
    assert.ok(required.size > 0, 'no require() found: the scan is broken');
    const outside = [...required].filter((m) => !m.startsWith('node:') && !m.startsWith('./'));
    assert.deepEqual(outside, []);
  });

  it('declares @temporalio/common as its only (peer) dependency', () => {
    const manifest = JSON.parse(readFileSync(path.resolve(__dirname, '../../package.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(manifest['dependencies'], undefined);
    assert.deepEqual(Object.keys(manifest['peerDependencies'] as object), ['@temporalio/common']);
    assert.equal((manifest['exports'] as Record<string, { types: string }>)['.']?.types, './dist/src/index.d.ts');
    assert.equal(pkg.CLIENT_VERSION, manifest['version'], 'CLIENT_VERSION (User-Agent) must follow package.json');
  });
});
