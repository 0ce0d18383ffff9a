/** Strategy planning: when hole punching is hopeless the relay starts with it. */
import { describe, expect, it } from 'vitest';
import { punchHopeless } from '../src/node/node.js';

describe('punchHopeless', () => {
  it('is true only for a symmetric NAT facing a port-filtering NAT (the lab punch matrix FAIL cells)', () => {
    expect(punchHopeless('SYMMETRIC', 'SYMMETRIC')).toBe(true);
    expect(punchHopeless('SYMMETRIC', 'PORT_RESTRICTED_CONE')).toBe(true);
    expect(punchHopeless('PORT_RESTRICTED_CONE', 'SYMMETRIC')).toBe(true);
    expect(punchHopeless('SYMMETRIC_UDP_FIREWALL', 'SYMMETRIC')).toBe(true);
    expect(punchHopeless('SYMMETRIC', 'RESTRICTED_CONE')).toBe(false);
    expect(punchHopeless('FULL_CONE', 'SYMMETRIC')).toBe(false);
    expect(punchHopeless('PORT_RESTRICTED_CONE', 'PORT_RESTRICTED_CONE')).toBe(false);
    expect(punchHopeless(undefined, 'SYMMETRIC')).toBe(false);
    expect(punchHopeless('OPEN', 'SYMMETRIC')).toBe(false);
  });
});
