import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InvalidArgumentError } from '../src/errors.js';
import {
  MAX_TIMER_MS,
  capSchedule,
  checkNatPmpEpoch,
  checkPcpEpoch,
  natPmpAnnouncementSchedule,
  natPmpRetransmitSchedule,
  pcpAnnounceRenewDelayMs,
  pcpNextRetransmitTime,
  pcpRand,
  pcpRenewalSchedule,
  pcpRetransmitSchedule,
  renewDelayMs,
} from '../src/nat/portmap/index.js';

const take = (it: Iterable<number>, n: number): number[] => {
  const out: number[] = [];
  for (const v of it) {
    if (out.length >= n) break;
    out.push(v);
  }
  return out;
};
const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);

describe('NAT-PMP retransmission (RFC 6886 §3.1)', () => {
  it('250 ms doubling, 9 transmissions, 127.75 s', () => {
    const s = natPmpRetransmitSchedule();
    expect(s).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]);
    expect(sum(s)).toBe(127_750);
  });
  it('capped by a total timeout: last wait shortened, sum exact', () => {
    expect(natPmpRetransmitSchedule({ totalTimeoutMs: 5000 })).toEqual([250, 500, 1000, 2000, 1250]);
    expect(natPmpRetransmitSchedule({ totalTimeoutMs: 3750 })).toEqual([250, 500, 1000, 2000]);
    expect(natPmpRetransmitSchedule({ totalTimeoutMs: 100 })).toEqual([100]);
    expect(natPmpRetransmitSchedule({ totalTimeoutMs: 1e9 })).toHaveLength(9);
  });
  it('attempts and initial interval configurable', () => {
    expect(natPmpRetransmitSchedule({ maxAttempts: 3 })).toEqual([250, 500, 1000]);
    expect(natPmpRetransmitSchedule({ initialMs: 100, maxAttempts: 2 })).toEqual([100, 200]);
    expect(() => natPmpRetransmitSchedule({ initialMs: 0 })).toThrow(InvalidArgumentError);
    expect(() => natPmpRetransmitSchedule({ totalTimeoutMs: -1 })).toThrow(InvalidArgumentError);
  });
  it('gateway announcement gaps (RFC 6886 §3.2.1): 10 sends', () => {
    expect(natPmpAnnouncementSchedule()).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]);
  });
});

describe('PCP retransmission (RFC 6887 §8.1.1)', () => {
  const noJitter = (): number => 0.5; // RAND = 0
  it('RAND is uniform in [-0.1, 0.1]', () => {
    expect(pcpRand(() => 0)).toBeCloseTo(-0.1);
    expect(pcpRand(() => 0.5)).toBe(0);
    expect(pcpRand(() => 0.999999)).toBeCloseTo(0.1);
    expect(pcpRand(() => NaN)).toBe(0);
  });
  it('IRT 3 s doubling to MRT 1024 s, unlimited by default', () => {
    const s = take(pcpRetransmitSchedule({ random: noJitter }), 14);
    expect(s).toEqual([3000, 6000, 12000, 24000, 48000, 96000, 192000, 384000, 768000, 1024000, 1024000, 1024000, 1024000, 1024000]);
  });
  it('RT = (1+RAND) * min(2*RTprev, MRT)', () => {
    expect(pcpNextRetransmitTime(undefined, -0.1)).toBeCloseTo(2700);
    expect(pcpNextRetransmitTime(2700, -0.1)).toBeCloseTo(4860);
    expect(pcpNextRetransmitTime(1_000_000, 0.1)).toBeCloseTo(1_126_400);
    const s = take(pcpRetransmitSchedule({ random: () => 0 }), 3);
    expect(s[0]).toBeCloseTo(2700);
    expect(s[1]).toBeCloseTo(4860);
    expect(s[2]).toBeCloseTo(8748);
  });
  it('MRC / maxAttempts and MRD / totalTimeoutMs (smaller wins)', () => {
    expect([...pcpRetransmitSchedule({ random: noJitter, mrc: 3 })]).toEqual([3000, 6000, 12000]);
    expect([...pcpRetransmitSchedule({ random: noJitter, mrc: 5, maxAttempts: 2 })]).toEqual([3000, 6000]);
    expect([...pcpRetransmitSchedule({ random: noJitter, mrdMs: 10_000 })]).toEqual([3000, 6000, 1000]);
    expect([...pcpRetransmitSchedule({ random: noJitter, mrdMs: 60_000, totalTimeoutMs: 5000 })]).toEqual([3000, 2000]);
  });
  it('jittered schedules stay within ±10 % of the nominal ones and respect caps', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), { minLength: 30, maxLength: 30 }), fc.integer({ min: 1, max: 3_000_000 }), (rs, cap) => {
        let i = 0;
        const random = (): number => rs[i++ % rs.length] as number;
        const s = [...pcpRetransmitSchedule({ random, totalTimeoutMs: cap })];
        expect(sum(s)).toBeCloseTo(cap, 6);
        let prev: number | undefined;
        for (const w of s.slice(0, -1)) {
          const nominal = prev === undefined ? 3000 : Math.min(2 * prev, 1_024_000);
          expect(w).toBeGreaterThanOrEqual(nominal * 0.9 - 1e-6);
          expect(w).toBeLessThanOrEqual(nominal * 1.1 + 1e-6);
          prev = w;
        }
      }),
      { numRuns: 500 },
    );
  });
  it('capSchedule on an infinite sequence', () => {
    function* ones(): Generator<number> {
      for (;;) yield 1;
    }
    expect([...capSchedule(ones(), { maxAttempts: 4 })]).toEqual([1, 1, 1, 1]);
    expect([...capSchedule(ones(), { totalTimeoutMs: 2.5 })]).toEqual([1, 1, 0.5]);
  });
});

describe('epoch validation', () => {
  it('NAT-PMP (RFC 6886 §3.6): 7/8 of elapsed client time, 2 s slack', () => {
    const first = checkNatPmpEpoch(undefined, 1000, 0);
    expect(first.lostState).toBe(false);
    // 80 s later the gateway says +70 s: expected >= 1000 + 70 - 2
    expect(checkNatPmpEpoch(first.next, 1070, 80_000).lostState).toBe(false);
    expect(checkNatPmpEpoch(first.next, 1068, 80_000).lostState).toBe(false); // exactly at the limit
    expect(checkNatPmpEpoch(first.next, 1067, 80_000).lostState).toBe(true);
    // reboot: epoch back near zero
    const r = checkNatPmpEpoch(first.next, 5, 10_000);
    expect(r.lostState).toBe(true);
    expect(r.reason).toMatch(/below the expected/);
    expect(r.next).toEqual({ serverEpoch: 5, clientTimeMs: 10_000 });
    // a faster server clock is never a loss for NAT-PMP
    expect(checkNatPmpEpoch(first.next, 5000, 1000).lostState).toBe(false);
  });
  it('PCP (RFC 6887 §8.5): backwards by more than 1 s, or deltas disagreeing', () => {
    const p = { serverEpoch: 1000, clientTimeMs: 0 };
    expect(checkPcpEpoch(undefined, 1000, 0).lostState).toBe(false);
    expect(checkPcpEpoch(p, 999, 0).lostState).toBe(false); // reordering tolerance
    expect(checkPcpEpoch(p, 998, 0).lostState).toBe(true);
    expect(checkPcpEpoch(p, 998, 0).reason).toMatch(/went back/);
    // 100 s elapsed on both: fine
    expect(checkPcpEpoch(p, 1100, 100_000).lostState).toBe(false);
    // client 100 s, server 5 s: server_delta + 2 < client_delta - client_delta/16 → invalid
    expect(checkPcpEpoch(p, 1005, 100_000).lostState).toBe(true);
    // server 200 s, client 100 s: client_delta + 2 < server_delta - server_delta/16 → invalid
    expect(checkPcpEpoch(p, 1200, 100_000).lostState).toBe(true);
    // boundary: client 32 s → client - client/16 = 30; server 28 → 28 + 2 = 30, not < 30
    expect(checkPcpEpoch(p, 1028, 32_000).lostState).toBe(false);
    expect(checkPcpEpoch(p, 1027, 32_000).lostState).toBe(true);
  });
  it('rejects nonsense epochs', () => {
    expect(() => checkPcpEpoch(undefined, -1, 0)).toThrow(InvalidArgumentError);
    expect(() => checkNatPmpEpoch(undefined, 2 ** 32, 0)).toThrow(InvalidArgumentError);
    expect(() => checkNatPmpEpoch(undefined, 1, NaN)).toThrow(InvalidArgumentError);
  });
});

describe('renewal timing', () => {
  it('half the lifetime, clamped to what setTimeout can do', () => {
    expect(renewDelayMs(7200)).toBe(3_600_000);
    expect(renewDelayMs(1)).toBe(500);
    expect(renewDelayMs(0)).toBeUndefined();
    expect(renewDelayMs(0xffffffff)).toBe(MAX_TIMER_MS);
    expect(() => renewDelayMs(-5)).toThrow(InvalidArgumentError);
  });
  it('PCP: [1/2, 5/8], then [3/4, 3/4+1/16], [7/8, 7/8+1/32], …, ≥ 4 s apart, before expiry', () => {
    expect(pcpRenewalSchedule(3600, { random: () => 0 }).slice(0, 3)).toEqual([1_800_000, 2_700_000, 3_150_000]);
    expect(pcpRenewalSchedule(3600, { random: () => 0.999999 })[0]).toBeCloseTo(2_250_000, -1);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), (life, r) => {
        const s = pcpRenewalSchedule(life, { random: () => r });
        if (life === 0) expect(s).toEqual([]);
        for (let k = 0; k < s.length; k++) {
          const t = s[k] as number;
          expect(t).toBeLessThan(life * 1000);
          if (k === 0) {
            expect(t).toBeGreaterThanOrEqual(life * 500);
            expect(t).toBeLessThanOrEqual(life * 625);
          } else {
            expect(t - (s[k - 1] as number)).toBeGreaterThanOrEqual(4000 - 1e-6);
          }
        }
      }),
      { numRuns: 2000 },
    );
    expect(pcpRenewalSchedule(4)).toEqual([expect.any(Number)]); // 2-2.5 s, then nothing 4 s later fits
    expect(pcpRenewalSchedule(1, { random: () => 0 })).toEqual([500]);
  });
  it('after an unsolicited ANNOUNCE: 0-5 s', () => {
    expect(pcpAnnounceRenewDelayMs(() => 0)).toBe(0);
    expect(pcpAnnounceRenewDelayMs(() => 0.5)).toBe(2500);
  });
});
