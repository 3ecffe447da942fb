import { describe, expect, it } from 'vitest';
import { emptyPresence, initials, reducePresence, visibleCursors } from './presence';

describe('reducePresence', () => {
  const start = reducePresence(emptyPresence, {
    type: 'presence',
    you: 'me',
    viewers: [
      { connection: 'me', name: 'Me', x: null, y: null },
      { connection: 'a', name: 'Ada', emoji: '🦊', x: null, y: null },
    ],
  });

  it('keeps the others from the facepile', () => {
    expect(start.you).toBe('me');
    expect(Object.keys(start.viewers)).toEqual(['a']);
  });

  it('follows joins, cursors and leaves', () => {
    let s = reducePresence(start, { type: 'joined', connection: 'b', name: 'Bob', x: null, y: null });
    s = reducePresence(s, { type: 'cursor', connection: 'b', name: 'Bob', x: 3, y: 4 });
    expect(visibleCursors(s).map((v) => [v.name, v.x, v.y])).toEqual([['Bob', 3, 4]]);
    s = reducePresence(s, { type: 'cursor', connection: 'b', name: 'Bob', x: null, y: null });
    expect(visibleCursors(s)).toEqual([]);
    s = reducePresence(s, { type: 'left', connection: 'b' });
    expect(Object.keys(s.viewers)).toEqual(['a']);
    expect(reducePresence(s, { type: 'cursor', connection: 'me', name: 'Me', x: 1, y: 1 })).toBe(s);
  });

  it('shows others dragging a card until the card moves', () => {
    let s = reducePresence(start, { type: 'drag', connection: 'a', name: 'Ada', worktree_id: 'w1', x: 5, y: 6 });
    expect(s.drags.w1).toEqual({ connection: 'a', x: 5, y: 6 });
    s = reducePresence(s, { type: 'event', event_type: 'canvas.CardMoved', event: { worktree_id: 'w1' } });
    expect(s.drags).toEqual({});
  });
});

describe('initials', () => {
  it('takes two letters', () => {
    expect(initials('Ada Lovelace')).toBe('AL');
    expect(initials('bob')).toBe('BO');
    expect(initials('')).toBe('?');
  });
});
