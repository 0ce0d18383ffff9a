/** examples/dht.ts runs to the end and does what it prints (so the example cannot rot). */
import { describe, expect, it } from 'vitest';
import { main as dhtDemo } from '../examples/dht.js';

describe('examples/dht.ts', () => {
  it('five standalone DHT nodes: every node reads B’s key, C cannot overwrite or delete it, B deletes it', async () => {
    const lines: string[] = [];
    const r = await dhtDemo((l) => lines.push(l));
    expect(r.readBack).toEqual(Array(5).fill('hello from B'));
    expect(r.overwriteRefused).toBe('ERR_RECORD');
    expect(r.deleteRefused).toBe('ERR_RECORD');
    expect(r.updated).toEqual({ color: 'blue', size: 42 });
    expect(r.afterDelete).toBe('(gone)');
    expect(r.hasAfterDelete).toBe(false);
    expect(lines.some((l) => l.includes('every node reads greeting'))).toBe(true);
  }, 30_000);
});
