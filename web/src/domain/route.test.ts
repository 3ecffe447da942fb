import { describe, expect, it } from 'vitest';
import { boardFromHash, commandId, hashForBoard } from './route';

describe('routes', () => {
  it('reads and writes the board hash', () => {
    expect(boardFromHash('#/boards/sprint-1')).toBe('sprint-1');
    expect(boardFromHash(hashForBoard('a b'))).toBe('a b');
    expect(boardFromHash('')).toBeNull();
    expect(boardFromHash('#/other')).toBeNull();
  });

  it('makes command ids the gateway accepts', () => {
    const id = commandId();
    expect(id).toMatch(/^[A-Za-z0-9_-]{16,128}$/);
    expect(commandId()).not.toBe(id);
  });
});
