// The board as React Flow nodes: zones (bottom, in their stacking order), notes, then cards
// (a pinned card is a child of its zone, positioned relative to it, so it moves with it).
import type { Node } from '@xyflow/react';
import { zonesInOrder, type BoardState, type NoteState, type ZoneState } from './board';
import type { PresenceState } from './presence';

export type ZoneNodeData = { zone: ZoneState };
export type CardNodeData = { worktreeId: string; name: string; draggedBy: string | null };
export type NoteNodeData = { note: NoteState };

export type ZoneNode = Node<ZoneNodeData, 'zone'>;
export type CardNode = Node<CardNodeData, 'card'>;
export type NoteNode = Node<NoteNodeData, 'note'>;
export type BoardNode = ZoneNode | CardNode | NoteNode;

export const CARD_Z = 1000;
const NOTE_Z = 500;

export const zoneNodeId = (id: string) => `zone:${id}`;
export const cardNodeId = (id: string) => `card:${id}`;
export const noteNodeId = (id: string) => `note:${id}`;

/** What a node id stands for. */
export function parseNodeId(id: string): { kind: 'zone' | 'card' | 'note'; id: string } | null {
  const m = /^(zone|card|note):(.+)$/.exec(id);
  return m ? { kind: m[1] as 'zone' | 'card' | 'note', id: m[2]! } : null;
}

export function boardNodes(
  board: BoardState,
  presence: PresenceState,
  names: Record<string, string>,
): BoardNode[] {
  const zones: ZoneNode[] = zonesInOrder(board).map((zone) => ({
    id: zoneNodeId(zone.id),
    type: 'zone',
    position: { x: zone.x, y: zone.y },
    width: zone.width,
    height: zone.height,
    zIndex: zone.z,
    draggable: !zone.locked,
    selectable: false,
    data: { zone },
  }));
  const notes: NoteNode[] = Object.values(board.notes).map((note) => ({
    id: noteNodeId(note.id),
    type: 'note',
    position: { x: note.x, y: note.y },
    width: note.width,
    ...(note.height !== null ? { height: note.height } : {}),
    zIndex: NOTE_Z,
    selectable: false,
    data: { note },
  }));
  const cards: CardNode[] = Object.values(board.cards).map((card) => {
    const drag = presence.drags[card.worktree_id];
    const pinned = drag === undefined && card.zone_id !== null && card.zone_id in board.zones;
    const base = {
      id: cardNodeId(card.worktree_id),
      type: 'card' as const,
      width: card.width,
      height: card.height,
      zIndex: CARD_Z,
      selectable: false,
      data: {
        worktreeId: card.worktree_id,
        name: names[card.worktree_id] ?? card.worktree_id.slice(0, 8),
        draggedBy: drag ? (presence.viewers[drag.connection]?.name ?? 'someone') : null,
      },
    };
    if (drag) return { ...base, position: { x: drag.x, y: drag.y } };
    if (pinned) return { ...base, parentId: zoneNodeId(card.zone_id!), position: { x: card.x, y: card.y } };
    return { ...base, position: { x: card.abs_x, y: card.abs_y } };
  });
  return [...zones, ...notes, ...cards];
}

/** New nodes from the board, keeping what React Flow measured and the node being dragged here. */
export function mergeNodes(previous: BoardNode[], next: BoardNode[]): BoardNode[] {
  const before = new Map(previous.map((n) => [n.id, n]));
  return next.map((n) => {
    const old = before.get(n.id);
    if (!old) return n;
    if (old.dragging) return old;
    return old.measured ? { ...n, measured: old.measured } : n;
  });
}
