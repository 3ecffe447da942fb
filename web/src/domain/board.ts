// A board as the UI holds it: the gateway's snapshot, then its events applied in order.
// Pure: `reduceBoard(state, frame) => state`. Shapes follow the gateway's canvas_model.py
// (snapshot) and src/gen/events.ts (events; a zone there has `zone_id`, a note `note_id`).

export interface ZoneTriggerSpec {
  template: string;
  behavior?: string;
  [k: string]: unknown;
}

export interface ZoneState {
  id: string;
  label: string;
  x: number;
  y: number;
  width: number;
  height: number;
  border_color: string;
  background_color: string;
  locked: boolean;
  trigger: ZoneTriggerSpec | null;
  z: number; // a higher one is on top
}

export interface CardState {
  worktree_id: string;
  x: number; // relative to the zone's top-left when zone_id is set
  y: number;
  width: number;
  height: number;
  zone_id: string | null;
  abs_x: number; // board coordinates
  abs_y: number;
}

export interface NoteState {
  id: string;
  kind: string;
  x: number;
  y: number;
  width: number;
  height: number | null;
  content: string;
  font_size: number;
  color: string | null;
  background_color: string | null;
}

export interface TriggerState {
  id: string;
  zone_id: string;
  worktree_id: string;
  status: string; // requested, offered (waiting ones only: the others are dropped)
  prompt: string | null;
}

export interface BoardInfo {
  id: string;
  name: string;
  slug: string;
}

export interface BoardState {
  seq: number;
  board: BoardInfo;
  deleted: boolean;
  zones: Record<string, ZoneState>;
  cards: Record<string, CardState>;
  notes: Record<string, NoteState>;
  triggers: Record<string, TriggerState>;
}

/** The snapshot as the gateway sends it (`board` is the whole BoardSnapshot). */
export interface SnapshotFrame {
  type: 'snapshot';
  seq: number;
  board: {
    board: BoardInfo;
    zones: ZoneState[];
    notes: NoteState[];
    cards: CardState[];
    triggers: TriggerState[];
    seq: number;
  };
}

export interface EventFrame {
  type: 'event';
  seq: number;
  event_type: string;
  event: Record<string, unknown>;
}

export type BoardFrame = SnapshotFrame | EventFrame;

type Json = Record<string, unknown>;

function num(v: unknown, fallback = 0): number {
  return typeof v === 'number' ? v : fallback;
}

function str(v: unknown, fallback = ''): string {
  return typeof v === 'string' ? v : fallback;
}

function byId<T>(items: T[], key: (t: T) => string): Record<string, T> {
  return Object.fromEntries(items.map((t) => [key(t), t]));
}

function without<T>(rec: Record<string, T>, key: string): Record<string, T> {
  if (!(key in rec)) return rec;
  const { [key]: _gone, ...rest } = rec;
  return rest;
}

export function fromSnapshot(frame: SnapshotFrame): BoardState {
  const b = frame.board;
  return {
    seq: frame.seq,
    board: { id: b.board.id, name: b.board.name, slug: b.board.slug },
    deleted: false,
    zones: byId(b.zones, (z) => z.id),
    cards: byId(b.cards, (c) => c.worktree_id),
    notes: byId(b.notes, (n) => n.id),
    triggers: byId(
      b.triggers.map((t) => ({
        id: t.id,
        zone_id: t.zone_id,
        worktree_id: t.worktree_id,
        status: t.status,
        prompt: t.prompt ?? null,
      })),
      (t) => t.id,
    ),
  };
}

/** A zone of an event (`zone_id`), keeping the stacking order it had (a new one goes on top). */
function zoneOf(raw: Json, state: BoardState): ZoneState {
  const id = str(raw.zone_id);
  const before = state.zones[id];
  const top = Math.max(-1, ...Object.values(state.zones).map((z) => z.z));
  const trigger = raw.trigger;
  return {
    id,
    label: str(raw.label),
    x: num(raw.x),
    y: num(raw.y),
    width: num(raw.width, 100),
    height: num(raw.height, 100),
    border_color: str(raw.border_color, before?.border_color ?? '#5b8def'),
    background_color: str(raw.background_color, before?.background_color ?? '#5b8def1a'),
    locked: raw.locked === true,
    trigger:
      typeof trigger === 'object' && trigger !== null ? (trigger as ZoneTriggerSpec) : null,
    z: before?.z ?? top + 1,
  };
}

function noteOf(raw: Json): NoteState {
  return {
    id: str(raw.note_id),
    kind: str(raw.kind, 'text'),
    x: num(raw.x),
    y: num(raw.y),
    width: num(raw.width, 200),
    height: typeof raw.height === 'number' ? raw.height : null,
    content: str(raw.content),
    font_size: num(raw.font_size, 14),
    color: typeof raw.color === 'string' ? raw.color : null,
    background_color: typeof raw.background_color === 'string' ? raw.background_color : null,
  };
}

/** Pinned cards follow their zone: their board coordinates from the zone's position. */
function repin(cards: Record<string, CardState>, zone: ZoneState): Record<string, CardState> {
  let out = cards;
  for (const card of Object.values(cards)) {
    if (card.zone_id !== zone.id) continue;
    out = { ...out, [card.worktree_id]: { ...card, abs_x: zone.x + card.x, abs_y: zone.y + card.y } };
  }
  return out;
}

function applyEvent(state: BoardState, type: string, e: Json): BoardState {
  switch (type) {
    case 'canvas.BoardRenamed':
    case 'canvas.BoardUpdated':
      return { ...state, board: { ...state.board, name: str(e.name, state.board.name) } };
    case 'canvas.BoardDeleted':
      return { ...state, deleted: true };
    case 'canvas.ZoneAdded':
    case 'canvas.ZoneUpdated': {
      const zone = zoneOf((e.zone ?? {}) as Json, state);
      return { ...state, zones: { ...state.zones, [zone.id]: zone }, cards: repin(state.cards, zone) };
    }
    case 'canvas.ZoneDeleted':
      // CardUnpinned / CardRemoved follow for its cards.
      return { ...state, zones: without(state.zones, str(e.zone_id)) };
    case 'canvas.NoteAdded':
    case 'canvas.NoteUpdated': {
      const note = noteOf((e.note ?? {}) as Json);
      return { ...state, notes: { ...state.notes, [note.id]: note } };
    }
    case 'canvas.NoteDeleted':
      return { ...state, notes: without(state.notes, str(e.note_id)) };
    case 'canvas.CardMoved': {
      const id = str(e.worktree_id);
      const zoneId = typeof e.zone_id === 'string' ? e.zone_id : null;
      const zone = zoneId === null ? undefined : state.zones[zoneId];
      const x = num(e.x);
      const y = num(e.y);
      const before = state.cards[id];
      const card: CardState = {
        worktree_id: id,
        x,
        y,
        width: num(e.width, before?.width ?? 240),
        height: num(e.height, before?.height ?? 120),
        zone_id: zoneId,
        abs_x: zone ? zone.x + x : x,
        abs_y: zone ? zone.y + y : y,
      };
      return { ...state, cards: { ...state.cards, [id]: card } };
    }
    case 'canvas.CardUnpinned': {
      const id = str(e.worktree_id);
      const before = state.cards[id];
      if (!before) return state;
      const x = num(e.x);
      const y = num(e.y);
      const card = { ...before, zone_id: null, x, y, abs_x: x, abs_y: y };
      return { ...state, cards: { ...state.cards, [id]: card } };
    }
    case 'canvas.CardRemoved':
      return { ...state, cards: without(state.cards, str(e.worktree_id)) };
    case 'canvas.ZoneTriggerRequested':
    case 'canvas.ZoneTriggerOffered': {
      const id = str(e.trigger_id);
      const offered = type === 'canvas.ZoneTriggerOffered';
      const trigger: TriggerState = {
        id,
        zone_id: str(e.zone_id),
        worktree_id: str(e.worktree_id),
        status: offered ? 'offered' : 'requested',
        prompt: offered ? str(e.prompt) : null,
      };
      return { ...state, triggers: { ...state.triggers, [id]: trigger } };
    }
    case 'canvas.ZoneTriggerFired':
    case 'canvas.ZoneTriggerFailed':
    case 'canvas.ZoneTriggerDismissed':
      return { ...state, triggers: without(state.triggers, str(e.trigger_id)) };
    default:
      return state; // comments, reactions...: not shown yet
  }
}

/** The board after one frame; `null` until the snapshot. An event already seen is ignored. */
export function reduceBoard(state: BoardState | null, frame: BoardFrame): BoardState | null {
  if (frame.type === 'snapshot') return fromSnapshot(frame);
  if (state === null || frame.seq <= state.seq) return state;
  return { ...applyEvent(state, frame.event_type, frame.event), seq: frame.seq };
}

/** The first trigger waiting for the user's choice, if any. */
export function offeredTrigger(state: BoardState | null): TriggerState | null {
  if (!state) return null;
  return Object.values(state.triggers).find((t) => t.status === 'offered') ?? null;
}

/** Zones bottom to top. */
export function zonesInOrder(state: BoardState): ZoneState[] {
  return Object.values(state.zones).sort((a, b) => a.z - b.z || a.id.localeCompare(b.id));
}

/** The cards pinned to a zone (what deleting it would unpin or remove). */
export function pinnedTo(board: BoardState, zoneId: string): CardState[] {
  return Object.values(board.cards).filter((card) => card.zone_id === zoneId);
}
