/**
 * `{ signal, timeout }` reach the async operations added to the rule late: the testnet's
 * `addNode`, `PipeDhtTransport.listen` and `startDhtNode`'s listening step.
 */
import { describe, expect, it } from 'vitest';
import { Identity } from '../src/crypto/identity.js';
import { PipeDhtTransport, startDhtNode } from '../src/dht/index.js';
import { AbortError } from '../src/errors.js';
import { createTestnet } from '../src/testnet/index.js';

describe('AbortOptions on late additions', () => {
  it('testnet.addNode takes a signal: aborted, it rejects with AbortError and the testnet keeps working', async () => {
    const net = await createTestnet(2, { seed: 'abort-options' });
    try {
      await expect(net.addNode({ signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
      const p = await net.addNode({ timeout: 10_000 });
      expect(p.bound).toBe(true);
      await net.waitConverged({ timeout: 20_000 });
      expect(net.alive().length).toBe(3);
    } finally {
      await net.close();
    }
  });

  it('PipeDhtTransport.listen and startDhtNode take a signal: aborted, nothing is opened', async () => {
    await expect(PipeDhtTransport.listen({ identity: Identity.generate(), bind: '127.0.0.1:0' }, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(startDhtNode({ identity: Identity.generate(), bind: '127.0.0.1:0', signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    const t = await PipeDhtTransport.listen({ identity: Identity.generate(), bind: '127.0.0.1:0' }, { timeout: 5000 });
    await t.close();
  });
});
