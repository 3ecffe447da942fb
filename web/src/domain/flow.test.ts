import { describe, expect, it } from 'vitest';
import { reduceBoard, type BoardState } from './board';
import { boardNodes, mergeNodes, parseNodeId } from './flow';
import { emptyPresence } from './presence';

const board = reduceBoard(null, {
  type: 'snapshot',
  seq: 1,
  board: {
    seq: 1,
    board: { id: 'b', name: 'B', slug: 'b' },
    zones: [
      { id: 'z2', label: 'Top', x: 0, y: 0, width: 50, height: 50, border_color: '', background_color: '', locked: true, trigger: null, z: 1 },
      { id: 'z1', label: 'Bottom', x: 100, y: 100, width: 500, height: 500, border_color: '', background_color: '', locked: false, trigger: null, z: 0 },
    ],
    cards: [
      { worktree_id: 'w1', x: 10, y: 10, width: 200, height: 80, zone_id: 'z1', abs_x: 110, abs_y: 110 },
      { worktree_id: 'w2', x: 900, y: 900, width: 200, height: 80, zone_id: null, abs_x: 900, abs_y: 900 },
    ],
    notes: [],
    triggers: [],
  },
}) as BoardState;

describe('boardNodes', () => {
  it('puts zones first in their order, pinned cards inside their zone', () => {
    const nodes = boardNodes(board, emptyPresence, { w1: 'one' });
    expect(nodes.map((n) => n.id)).toEqual(['zone:z1', 'zone:z2', 'card:w1', 'card:w2']);
    const [z1, z2, w1, w2] = nodes;
    expect(z1?.draggable).toBe(true);
    expect(z2?.draggable).toBe(false);
    expect(w1).toMatchObject({ parentId: 'zone:z1', position: { x: 10, y: 10 }, data: { name: 'one' } });
    expect(w2).toMatchObject({ position: { x: 900, y: 900 }, data: { name: 'w2' } });
    expect(w2?.parentId).toBeUndefined();
    expect(w1!.zIndex!).toBeGreaterThan(z2!.zIndex!);
  });

  it("shows another viewer's drag in board coordinates", () => {
    const presence = {
      ...emptyPresence,
      viewers: { a: { connection: 'a', name: 'Ada', emoji: '', x: null, y: null } },
      drags: { w1: { connection: 'a', x: 5, y: 6 } },
    };
    const card = boardNodes(board, presence, {}).find((n) => n.id === 'card:w1');
    expect(card).toMatchObject({ position: { x: 5, y: 6 }, data: { draggedBy: 'Ada' } });
    expect(card?.parentId).toBeUndefined();
  });
});

describe('mergeNodes', () => {
  it('keeps measurements and the node being dragged', () => {
    const [a, b] = boardNodes(board, emptyPresence, {});
    const prev = [
      { ...a!, measured: { width: 1, height: 2 } },
      { ...b!, dragging: true, position: { x: -1, y: -1 } },
    ];
    const merged = mergeNodes(prev, boardNodes(board, emptyPresence, {}));
    expect(merged[0]?.measured).toEqual({ width: 1, height: 2 });
    expect(merged[1]?.position).toEqual({ x: -1, y: -1 });
    expect(merged).toHaveLength(4);
  });
});

describe('parseNodeId', () => {
  it('splits kind and id', () => {
    expect(parseNodeId('card:w:1')).toEqual({ kind: 'card', id: 'w:1' });
    expect(parseNodeId('x')).toBeNull();
  });
});
