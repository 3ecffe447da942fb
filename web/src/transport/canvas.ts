// REST calls of the gateway's canvas API (services/gateway/README.md, "REST and WebSocket").

export interface BoardSummary {
  id: string;
  name: string;
  slug: string;
}

export interface Worktree {
  id: string;
  name: string;
  repo_slug?: string;
}

export interface TriggerIn {
  template: string;
  behavior: 'always_new' | 'show_picker';
}

export interface ZoneIn {
  label: string;
  x: number;
  y: number;
  width: number;
  height: number;
  trigger?: TriggerIn;
}

export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | null,
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
  }
  const res = await fetch(path, init);
  let data: unknown = null;
  try {
    data = await res.json();
  } catch {
    // an empty or non-JSON body
  }
  if (!res.ok) {
    const err = (data ?? {}) as { code?: unknown; message?: unknown; detail?: unknown };
    const message = typeof err.message === 'string' ? err.message : `HTTP ${res.status}`;
    throw new ApiError(
      `${method} ${path}: ${message}`,
      res.status,
      typeof err.code === 'string' ? err.code : null,
    );
  }
  return data as T;
}

const board = (slug: string) => `/api/boards/${encodeURIComponent(slug)}`;

export const listBoards = () => call<BoardSummary[]>('GET', '/api/boards');
export const createBoard = (name: string) => call<BoardSummary>('POST', '/api/boards', { name });
export const listWorktrees = () => call<Worktree[]>('GET', '/api/worktrees');
export const addZone = (slug: string, zone: ZoneIn) =>
  call<unknown>('POST', `${board(slug)}/zones`, zone);
export const placeCard = (slug: string, worktreeId: string, x: number, y: number) =>
  call<unknown>('PUT', `${board(slug)}/cards/${encodeURIComponent(worktreeId)}`, { x, y });
export const chooseTrigger = (slug: string, triggerId: string, prompt: string) =>
  call<unknown>('POST', `${board(slug)}/triggers/${encodeURIComponent(triggerId)}/choose`, {
    action: 'new_session',
    prompt,
  });
export const dismissTrigger = (slug: string, triggerId: string) =>
  call<unknown>('POST', `${board(slug)}/triggers/${encodeURIComponent(triggerId)}/dismiss`);
export const deleteZone = (slug: string, zoneId: string, cards: 'refuse' | 'unpin' | 'remove') =>
  call<unknown>('DELETE', `${board(slug)}/zones/${encodeURIComponent(zoneId)}?cards=${cards}`);
