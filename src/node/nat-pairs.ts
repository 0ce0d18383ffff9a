/**
 * Which NAT pairs hole punching can pass: a symmetric NAT (a new port per destination) facing
 * a port-filtering one cannot be punched, by UDP or TCP (the lab's punch matrix FAIL cells).
 * @module
 */

/** NAT types that filter by port: hole punching towards a symmetric NAT behind one of these fails. */
const PORT_FILTERING = new Set<string>(['PORT_RESTRICTED_CONE', 'SYMMETRIC', 'SYMMETRIC_UDP_FIREWALL']);

/**
 * True when UDP hole punching cannot work between NAT types `a` and `b` (one side maps per
 * destination, the other filters by port): the relay then starts with punching instead of
 * waiting for it to fail.
 */
export function punchHopeless(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  return (a === 'SYMMETRIC' && PORT_FILTERING.has(b)) || (b === 'SYMMETRIC' && PORT_FILTERING.has(a));
}
