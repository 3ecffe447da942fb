// Who else is on the board, where their cursors are and which card they drag. Pure.

export interface Viewer {
  connection: string;
  name: string;
  emoji: string;
  x: number | null; // flow coordinates; null: the cursor is off the canvas
  y: number | null;
}

export interface Drag {
  connection: string;
  x: number;
  y: number;
}

export interface PresenceState {
  you: string | null;
  viewers: Record<string, Viewer>; // others, by connection
  drags: Record<string, Drag>; // worktree id -> where another viewer holds its card
}

export const emptyPresence: PresenceState = { you: null, viewers: {}, drags: {} };

export type PresenceFrame =
  | { type: 'presence'; you: string; viewers: ViewerFrame[] }
  | ({ type: 'joined' | 'cursor' } & ViewerFrame)
  | ({ type: 'drag'; worktree_id: string } & ViewerFrame)
  | { type: 'left'; connection: string }
  | { type: 'event'; event_type: string; event: Record<string, unknown> };

export interface ViewerFrame {
  connection: string;
  name: string;
  emoji?: string;
  x?: number | null;
  y?: number | null;
}

function viewer(f: ViewerFrame, before?: Viewer): Viewer {
  return {
    connection: f.connection,
    name: f.name,
    emoji: f.emoji ?? before?.emoji ?? '',
    x: f.x ?? null,
    y: f.y ?? null,
  };
}

function dropDragsOf(drags: Record<string, Drag>, connection: string): Record<string, Drag> {
  return Object.fromEntries(Object.entries(drags).filter(([, d]) => d.connection !== connection));
}

export function reducePresence(state: PresenceState, frame: PresenceFrame): PresenceState {
  switch (frame.type) {
    case 'presence': {
      const viewers = frame.viewers
        .filter((v) => v.connection !== frame.you)
        .map((v) => viewer(v));
      return {
        you: frame.you,
        viewers: Object.fromEntries(viewers.map((v) => [v.connection, v])),
        drags: {},
      };
    }
    case 'joined':
    case 'cursor': {
      if (frame.connection === state.you) return state;
      const before = state.viewers[frame.connection];
      return { ...state, viewers: { ...state.viewers, [frame.connection]: viewer(frame, before) } };
    }
    case 'drag': {
      if (frame.connection === state.you || typeof frame.x !== 'number' || typeof frame.y !== 'number')
        return state;
      const drag = { connection: frame.connection, x: frame.x, y: frame.y };
      return { ...state, drags: { ...state.drags, [frame.worktree_id]: drag } };
    }
    case 'left': {
      const { [frame.connection]: _gone, ...viewers } = state.viewers;
      return { ...state, viewers, drags: dropDragsOf(state.drags, frame.connection) };
    }
    case 'event': {
      // A card's move (or removal) ends whatever drag others showed of it.
      const id = frame.event.worktree_id;
      if (typeof id !== 'string' || !(id in state.drags)) return state;
      const { [id]: _done, ...drags } = state.drags;
      return { ...state, drags };
    }
  }
}

/** Others' cursors that are on the canvas. */
export function visibleCursors(state: PresenceState): (Viewer & { x: number; y: number })[] {
  return Object.values(state.viewers).filter(
    (v): v is Viewer & { x: number; y: number } => v.x !== null && v.y !== null,
  );
}

export function initials(name: string): string {
  const parts = name.trim().split(/[\s_-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0]![0]! + parts[1]![0]! : name.trim().slice(0, 2);
  return letters.toUpperCase() || '?';
}
