import { describe, expect, it } from 'vitest';
import {
  offeredTrigger,
  pinnedTo,
  reduceBoard,
  zonesInOrder,
  type BoardState,
  type EventFrame,
  type SnapshotFrame,
} from './board';

function snapshot(): SnapshotFrame {
  return {
    type: 'snapshot',
    seq: 5,
    board: {
      seq: 5,
      board: { id: 'b1', name: 'Sprint', slug: 'sprint' },
      zones: [
        {
          id: 'z1', label: 'Review', x: 100, y: 50, width: 600, height: 400,
          border_color: '#f00', background_color: '#f001', locked: false,
          trigger: { template: 'Review {{ worktree.name }}', behavior: 'show_picker' }, z: 0,
        },
      ],
      cards: [
        { worktree_id: 'w1', x: 10, y: 20, width: 240, height: 120, zone_id: 'z1', abs_x: 110, abs_y: 70 },
      ],
      notes: [
        {
          id: 'n1', kind: 'text', x: 0, y: 0, width: 200, height: null, content: 'hi',
          font_size: 14, color: null, background_color: null,
        },
      ],
      triggers: [{ id: 't0', zone_id: 'z1', worktree_id: 'w1', status: 'offered', prompt: 'Review one' }],
    },
  };
}

function ev(seq: number, event_type: string, event: Record<string, unknown>): EventFrame {
  return { type: 'event', seq, event_type, event: { type: event_type, ...event } };
}

function start(): BoardState {
  const s = reduceBoard(null, snapshot());
  if (!s) throw new Error('no state');
  return s;
}

describe('reduceBoard', () => {
  it('builds the state from a snapshot', () => {
    const s = start();
    expect(s.seq).toBe(5);
    expect(s.board.slug).toBe('sprint');
    expect(Object.keys(s.zones)).toEqual(['z1']);
    expect(s.cards.w1?.abs_x).toBe(110);
    expect(s.notes.n1?.content).toBe('hi');
    expect(offeredTrigger(s)?.id).toBe('t0');
  });

  it('ignores events before the snapshot and events already seen', () => {
    expect(reduceBoard(null, ev(6, 'canvas.CardRemoved', { worktree_id: 'w1' }))).toBeNull();
    const s = start();
    expect(reduceBoard(s, ev(5, 'canvas.CardRemoved', { worktree_id: 'w1' }))).toBe(s);
  });

  it('moves a pinned card relative to its zone, an unpinned one in board coordinates', () => {
    let s = reduceBoard(start(), ev(6, 'canvas.CardMoved', {
      worktree_id: 'w1', x: 30, y: 40, width: 240, height: 120, zone_id: 'z1',
    }))!;
    expect([s.cards.w1?.abs_x, s.cards.w1?.abs_y]).toEqual([130, 90]);
    s = reduceBoard(s, ev(7, 'canvas.CardMoved', {
      worktree_id: 'w2', x: 900, y: 900, width: 200, height: 100, zone_id: null, placed: true,
    }))!;
    expect(s.cards.w2).toMatchObject({ abs_x: 900, abs_y: 900, zone_id: null, width: 200 });
    expect(s.seq).toBe(7);
  });

  it('lists the cards pinned to a zone (what deleting it asks about)', () => {
    let s = start();
    expect(pinnedTo(s, 'z1').map((c) => c.worktree_id)).toEqual(['w1']);
    s = reduceBoard(s, ev(6, 'canvas.CardUnpinned', { worktree_id: 'w1', zone_id: 'z1', x: 110, y: 70 }))!;
    expect(pinnedTo(s, 'z1')).toEqual([]);
  });

  it('adds zones on top, and updating a zone carries its pinned cards', () => {
    let s = reduceBoard(start(), ev(6, 'canvas.ZoneAdded', {
      zone: { zone_id: 'z2', label: 'Ship', x: 0, y: 0, width: 100, height: 100 },
    }))!;
    expect(zonesInOrder(s).map((z) => z.id)).toEqual(['z1', 'z2']);
    expect(s.zones.z2?.trigger).toBeNull();
    s = reduceBoard(s, ev(7, 'canvas.ZoneUpdated', {
      zone: { zone_id: 'z1', label: 'Review!', x: 1000, y: 2000, width: 600, height: 400, locked: true },
    }))!;
    expect(s.zones.z1).toMatchObject({ label: 'Review!', locked: true, z: 0, border_color: '#f00' });
    expect([s.cards.w1?.abs_x, s.cards.w1?.abs_y]).toEqual([1010, 2020]);
  });

  it('deletes zones, unpins and removes cards', () => {
    let s = reduceBoard(start(), ev(6, 'canvas.ZoneDeleted', { zone_id: 'z1', cards: 'unpin' }))!;
    s = reduceBoard(s, ev(7, 'canvas.CardUnpinned', { worktree_id: 'w1', zone_id: 'z1', x: 110, y: 70 }))!;
    expect(s.zones).toEqual({});
    expect(s.cards.w1).toMatchObject({ zone_id: null, x: 110, abs_x: 110, abs_y: 70 });
    s = reduceBoard(s, ev(8, 'canvas.CardRemoved', { worktree_id: 'w1' }))!;
    expect(s.cards).toEqual({});
  });

  it('keeps notes up to date', () => {
    let s = reduceBoard(start(), ev(6, 'canvas.NoteAdded', {
      note: { note_id: 'n2', kind: 'markdown', x: 1, y: 2, width: 300, content: '# Title' },
    }))!;
    s = reduceBoard(s, ev(7, 'canvas.NoteUpdated', {
      note: { note_id: 'n2', kind: 'markdown', x: 5, y: 2, width: 300, content: 'changed' },
    }))!;
    expect(s.notes.n2).toMatchObject({ x: 5, content: 'changed', kind: 'markdown' });
    s = reduceBoard(s, ev(8, 'canvas.NoteDeleted', { note_id: 'n1' }))!;
    expect(Object.keys(s.notes)).toEqual(['n2']);
  });

  it('tracks triggers from request to offer to an end', () => {
    let s = reduceBoard(start(), ev(6, 'canvas.ZoneTriggerDismissed', { trigger_id: 't0' }))!;
    expect(offeredTrigger(s)).toBeNull();
    s = reduceBoard(s, ev(7, 'canvas.ZoneTriggerRequested', { trigger_id: 't1', zone_id: 'z1', worktree_id: 'w1' }))!;
    expect(offeredTrigger(s)).toBeNull();
    s = reduceBoard(s, ev(8, 'canvas.ZoneTriggerOffered', {
      trigger_id: 't1', zone_id: 'z1', worktree_id: 'w1', prompt: 'Ship it', settings: {}, offered_to: 'anonymous',
    }))!;
    expect(offeredTrigger(s)).toMatchObject({ id: 't1', prompt: 'Ship it' });
    s = reduceBoard(s, ev(9, 'canvas.ZoneTriggerFired', { trigger_id: 't1' }))!;
    expect(offeredTrigger(s)).toBeNull();
  });

  it('passes over events it does not show, keeping the seq', () => {
    const s = reduceBoard(start(), ev(6, 'canvas.CommentAdded', { comment_id: 'c1' }))!;
    expect(s.seq).toBe(6);
    expect(s.zones).toEqual(start().zones);
  });
});
