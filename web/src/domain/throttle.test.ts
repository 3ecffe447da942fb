import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { throttle } from './throttle';

describe('throttle', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('sends the first call at once and the last one of a window at its end', () => {
    const seen: number[] = [];
    const t = throttle((n: number) => seen.push(n), 100);
    t(1);
    t(2);
    t(3);
    expect(seen).toEqual([1]);
    vi.advanceTimersByTime(100);
    expect(seen).toEqual([1, 3]);
    vi.advanceTimersByTime(500);
    t(4);
    expect(seen).toEqual([1, 3, 4]);
    t(5);
    t.cancel();
    vi.advanceTimersByTime(500);
    expect(seen).toEqual([1, 3, 4]);
  });
});
